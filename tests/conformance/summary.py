#!/usr/bin/env python3
"""Summary of a ginkgo JSON report (ginkgo --json-report) for run.sh.

Counts the specs in focus (those ginkgo set out to run), passed, failed (any
failure state: failed, panicked, timed out, interrupted, aborted) and skipped
(in focus, but the spec skipped itself at run time, e.g. a missing feature),
lists the failed ones with the first line of their failure, and ends with the
plain closing line "N passed, N failed, N skipped".
"""
import argparse
import json
import sys

FAILED = {"failed", "panicked", "timedout", "interrupted", "aborted"}


def name(spec):
    parts = [t for t in spec.get("ContainerHierarchyTexts") or [] if t]
    parts.append(spec.get("LeafNodeText", ""))
    text = " ".join(parts)
    labels = []
    for ls in spec.get("ContainerHierarchyLabels") or []:
        labels.extend(ls or [])
    labels.extend(spec.get("LeafNodeLabels") or [])
    # The e2e framework puts the bracketed tags into the texts already.
    return text, labels


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("report")
    ap.add_argument("--build-seconds", type=int, default=0)
    ap.add_argument("--run-seconds", type=int, default=0)
    ap.add_argument("--focus", default="")
    ap.add_argument("--skip", default="")
    a = ap.parse_args()
    with open(a.report) as f:
        reports = json.load(f)
    in_focus = passed = skipped = 0
    failed = []
    for r in reports:
        in_focus += (r.get("PreRunStats") or {}).get("SpecsThatWillRun", 0)
        for s in r.get("SpecReports") or []:
            if s.get("LeafNodeType") != "It":
                # A failed suite-level node (BeforeSuite...) fails the run too.
                if s.get("State") in FAILED:
                    failed.append((f"[{s.get('LeafNodeType')}]", s))
                continue
            state = s.get("State")
            if state == "passed":
                passed += 1
            elif state in FAILED:
                failed.append((name(s)[0], s))
            elif state == "skipped" and s.get("NumAttempts", 0) > 0:
                skipped += 1
    out = []
    out.append(f"focus: {a.focus}")
    out.append(f"skip:  {a.skip}")
    out.append(f"build: {a.build_seconds} s, specs: {a.run_seconds} s")
    out.append(f"in focus: {in_focus}, passed: {passed}, failed: {len(failed)}, skipped: {skipped}")
    if failed:
        out.append("")
        out.append("failed:")
        for n, s in sorted(failed, key=lambda x: x[0]):
            msg = ((s.get("Failure") or {}).get("Message") or "").strip().splitlines()
            first = msg[0][:200] if msg else ""
            out.append(f"  {n}")
            if first:
                out.append(f"      {s.get('State')}: {first}")
    out.append("")
    out.append(f"{passed} passed, {len(failed)} failed, {skipped} skipped")
    print("\n".join(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
