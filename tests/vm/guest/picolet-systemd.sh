#!/bin/bash
# Runs inside the systemd guest (as /mnt/share/run-in-vm.sh, from vmtest.service).
# Installs picolet as its unit file says, then checks the unit under a real systemd.
# Every check prints one line: "CHECK <name> ok <detail>" | "CHECK <name> FAIL <detail>" |
# "CHECK <name> skip <why>". Exit status: the number of failed checks.
# /mnt/share holds: picolet, picolet.service, picolet.default, config.yaml, busybox.tar,
# optionally dropin/*.conf (copied to /etc/systemd/system/picolet.service.d/) and a file
# "mode" containing "simple" when the unit runs with a Type=simple drop-in, "xfail" (below).
set -u
S=/mnt/share
export SYSTEMD_PAGER= SYSTEMD_COLORS=0 PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
fails=0
MODE=notify; [ -f $S/mode ] && MODE=$(cat $S/mode)
t0=$(date +%s.%N)
since() { awk -v a="$1" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }'; }
el() { since "$t0"; }
ok()   { echo "CHECK $1 ok ${2:-}"; }
# Known failures (file "xfail" in the share: check names, space-separated) print "xfail" and
# do not count; a known failure that passes prints "CHECK <name> ok" as usual.
XFAIL=" $(cat $S/xfail 2>/dev/null) "
fail() { case "$XFAIL" in *" $1 "*) echo "CHECK $1 xfail ${2:-}" ;;
                          *) echo "CHECK $1 FAIL ${2:-}"; fails=$((fails + 1)) ;; esac; }
skip() { echo "CHECK $1 skip ${2:-}"; }
prop() { systemctl show -p "$1" --value picolet; }
pods() { curl -sf --max-time 5 http://127.0.0.1:10255/pods; }
pod()  { pods | jq -r ".items[] | select(.metadata.name | startswith(\"sleeper\")) | $1" 2>/dev/null; }
wait_until() { # seconds, command...: polls every 0.5 s
  local end=$(( $(date +%s) + $1 )); shift
  until "$@"; do [ "$(date +%s)" -ge "$end" ] && return 1; sleep 0.5; done
}
running() { [ "$(pod .status.phase)" = Running ] && [ -n "$(pod '.status.containerStatuses[0].state.running.startedAt // empty')" ]; }
active() { [ "$(systemctl is-active picolet)" = active ]; }
reaper_pid() { pgrep -f '^/usr/local/bin/picolet reaper' | head -1; }
diag() { echo "--- systemctl status picolet"; systemctl status --no-pager -l picolet 2>&1 | tail -25
         echo "--- journalctl -u picolet (last 40)"; journalctl -u picolet --no-pager -o short-monotonic | tail -40; }

echo "guest: $(uname -r), $(systemctl --version | head -1), cgroup: $(stat -fc %T /sys/fs/cgroup), unit mode: $MODE"

# --- install, as the header of picolet.service describes
install -m 0755 $S/picolet /usr/local/bin/picolet
install -D -m 0644 $S/picolet.service /etc/systemd/system/picolet.service
install -D -m 0644 $S/picolet.default /etc/default/picolet
install -D -m 0644 $S/config.yaml /etc/picolet/config.yaml
if ls $S/dropin/*.conf >/dev/null 2>&1; then
  install -d /etc/systemd/system/picolet.service.d
  cp $S/dropin/*.conf /etc/systemd/system/picolet.service.d/
  echo "drop-ins: $(cat /etc/systemd/system/picolet.service.d/*.conf | grep -v '^\[' | tr '\n' ' ')"
fi
install -d /etc/kubernetes/manifests /var/lib/picolet/images
cp $S/busybox.tar /var/lib/picolet/images/
cat > /etc/kubernetes/manifests/sleeper.yaml <<'EOF'
apiVersion: v1
kind: Pod
metadata:
  name: sleeper
spec:
  containers:
  - name: app
    image: busybox
    command: [sleep, "100000"]
EOF
# Not a pod: picolet should say so at warning level (for the journal priority check).
printf 'apiVersion: v1\nkind: Pod\nmetadata: [this is not\n' > /etc/kubernetes/manifests/broken.yaml
systemctl daemon-reload

# --- systemd-analyze verify, with this guest's systemd
out=$(systemd-analyze verify /etc/systemd/system/picolet.service 2>&1)
[ -z "$out" ] && ok verify "systemd-analyze verify: no output" || fail verify "$(echo "$out" | tr '\n' '|')"

# --- start: with Type=notify `systemctl start` returns only after READY=1
ts=$(date +%s.%N)
if timeout 150 systemctl start picolet; then
  took=$(since "$ts")
  if active; then ok start "systemctl start returned after ${took}s, is-active=active, Type=$(prop Type)"
  else fail start "systemctl start returned but is-active=$(systemctl is-active picolet)"; fi
else
  fail start "systemctl start failed or timed out (rc=$?; no READY=1 within 150 s?)"; diag
  echo "giving up: picolet did not start"; exit $((fails + 50))
fi
# READY=1 is promised after the read-only port is bound: it must answer right away.
if [ "$MODE" = notify ]; then
  curl -sf --max-time 5 http://127.0.0.1:10255/healthz >/dev/null \
    && ok ready-means-serving "/healthz answered immediately after start returned" \
    || fail ready-means-serving "/healthz did not answer right after READY=1"
  st=$(prop StatusText)
  [ -n "$st" ] && ok status-text "StatusText=\"$st\"" || fail status-text "StatusText is empty (no STATUS= sent)"
else
  skip ready-means-serving "Type=simple drop-in (binary without READY=1)"
  skip status-text "Type=simple drop-in; StatusText=\"$(prop StatusText)\""
fi

# --- static pod reaches Running
if wait_until 180 running; then
  ok pod-running "sleeper Running at +$(el)s, containerID $(pod '.status.containerStatuses[0].containerID')"
else
  fail pod-running "phase=$(pod .status.phase) state=$(pod '.status.containerStatuses[0].state' | tr -d ' \n')"; diag
  echo "giving up: no running pod"; exit $((fails + 50))
fi
cid=$(pod '.status.containerStatuses[0].containerID')
started=$(pod '.status.containerStatuses[0].state.running.startedAt')
id=${cid#runc://}
cpid=$(runc --root /var/lib/picolet/runc state "$id" 2>/dev/null | jq -r .pid)
rpid=$(reaper_pid)
echo "container $id pid=$cpid startedAt=$started; reaper pid=$rpid; picolet MainPID=$(prop MainPID)"
[ -n "$cpid" ] && [ "$cpid" != null ] && [ "$(cat /proc/$cpid/comm 2>/dev/null)" = sleep ] \
  && ok container-pid "runc state: pid $cpid is sleep" || fail container-pid "runc state $id -> pid '$cpid'"

# The pod's state after a picolet restart must be unchanged.
same_pod() { # check name, what happened
  local c r s
  wait_until 90 running || { fail "$1" "pod not Running again after $2: $(pod .status.phase)"; return; }
  c=$(pod '.status.containerStatuses[0].containerID'); r=$(pod '.status.containerStatuses[0].restartCount')
  s=$(pod '.status.containerStatuses[0].state.running.startedAt')
  if ! kill -0 "$cpid" 2>/dev/null; then fail "$1" "container pid $cpid gone after $2"
  elif [ "$c" != "$cid" ] || [ "$r" != 0 ] || [ "$s" != "$started" ]; then
    fail "$1" "after $2: containerID $c (was $cid) restartCount $r startedAt $s (was $started)"
  else ok "$1" "after $2: pid $cpid alive, containerID unchanged, restartCount 0, startedAt unchanged"; fi
}

# --- cgroup: Delegate=yes, the reaper lives in the unit's cgroup, the container in the tree at
# config.yaml's cgroupRoot (/picolet: outside the unit, so systemd 252 can restart it)
cg=$(prop ControlGroup)
if [ -n "$cg" ] && [ -d "/sys/fs/cgroup$cg" ] && [ "$(prop Delegate)" = yes ]; then
  ok cgroup-unit "ControlGroup=$cg Delegate=yes subtree_control='$(cat /sys/fs/cgroup$cg/cgroup.subtree_control)'"
else fail cgroup-unit "ControlGroup='$cg' Delegate=$(prop Delegate)"; fi
rcg=$(sed -n 's/^0:://p' /proc/$rpid/cgroup 2>/dev/null)
case "$rcg" in "$cg"|"$cg"/*) ok cgroup-reaper "reaper $rpid in $rcg" ;; *) fail cgroup-reaper "reaper '$rpid' in '$rcg', unit cgroup $cg" ;; esac
ccg=$(sed -n 's/^0:://p' /proc/$cpid/cgroup 2>/dev/null)
croot=$(sed -n 's/^cgroupRoot: *//p' /etc/picolet/config.yaml); croot=${croot:-$cg}
case "$ccg" in "$croot"/kubepods/*) ok cgroup-container "container in $ccg (cgroupRoot $croot)" ;;
  *) fail cgroup-container "container in '$ccg', not below $croot/kubepods" ;; esac
pcg=$(sed -n 's/^0:://p' /proc/$(prop MainPID)/cgroup 2>/dev/null)
# The tree picolet lays out (kubepods/besteffort/pod<uid>/<container>), wherever its root is: the
# unit's cgroup (then picolet and the reaper sit in its supervisor leaf) or a cgroupRoot.
troot=${ccg%%/kubepods/*}
if [ "$troot" != "$ccg" ] && [ "${ccg#"$troot"/kubepods/besteffort/pod}" != "$ccg" ]; then
  has() { case " $1 " in *" $2 "*) return 0 ;; esac; return 1; } # word list, word
  kp=/sys/fs/cgroup$troot/kubepods; sc=$(cat "$kp/cgroup.subtree_control")
  if has "$sc" cpu && has "$sc" memory && has "$sc" pids; then
    ok cgroup-tree "container in $ccg; kubepods hands down '$sc', memory.max $(cat "$kp/memory.max")"
  else fail cgroup-tree "kubepods subtree_control '$sc'"; fi
  if [ "$troot" = "$cg" ]; then
    sv=$(tr '\n' ' ' < "/sys/fs/cgroup$cg/supervisor/cgroup.procs" 2>/dev/null); left=$(tr '\n' ' ' < "/sys/fs/cgroup$cg/cgroup.procs")
    if has "$sv" "$(prop MainPID)" && has "$sv" "$rpid" && [ -z "$left" ]; then
      ok cgroup-supervisor "picolet and the reaper in $cg/supervisor ($sv), none in $cg itself"
    else fail cgroup-supervisor "supervisor leaf holds '$sv', $cg itself '$left'; MainPID $(prop MainPID), reaper $rpid"; fi
  fi
else fail cgroup-tree "container in '$ccg', not in a kubepods/besteffort/pod<uid> cgroup"; fi
echo "picolet main process cgroup: $pcg; unit cgroup tree:"; find /sys/fs/cgroup$cg -name cgroup.procs | while read -r f; do
  echo "  ${f#/sys/fs/cgroup} : $(tr '\n' ' ' < "$f")"; done

# --- journal: picolet's <N> prefixes became priorities
sleep 1
jr=$(journalctl -u picolet _COMM=picolet -o json --no-pager | jq -r '.PRIORITY + " " + (.MESSAGE|tostring)')
n_all=$(echo "$jr" | grep -c . ); n_info=$(journalctl -u picolet _COMM=picolet -p info -q --no-pager | grep -c .)
n_warn=$(journalctl -u picolet _COMM=picolet -p warning -q --no-pager | grep -c .)
raw=$(echo "$jr" | grep -cE '^[0-9] <[0-7]>')
echo "journal: picolet lines $n_all, by priority: $(echo "$jr" | cut -d' ' -f1 | sort | uniq -c | tr -s ' \n' ' ')"
journalctl -u picolet _COMM=picolet -p warning -q --no-pager -o cat | head -3 | sed 's/^/  warning: /'
if [ "$n_all" -gt 0 ] && [ "$raw" = 0 ] && [ "$n_warn" -ge 1 ] && [ "$n_info" -gt "$n_warn" ]; then
  ok journal-priority "-p warning: $n_warn lines, -p info: $n_info, no literal <N> prefix left"
else fail journal-priority "lines $n_all, -p info $n_info, -p warning $n_warn, unparsed <N> prefixes $raw"; fi

# --- watchdog: WatchdogSec= passes with picolet alive (WATCHDOG=1 keeps coming)
wd=$(prop WatchdogUSec)
if [ "$MODE" = notify ] && [ -n "$wd" ] && [ "$wd" != 0 ] && [ "$wd" != infinity ]; then
  mp=$(prop MainPID); t_start=$(prop ExecMainStartTimestampMonotonic)
  wd_us=$(systemd-analyze timespan "$wd" | awk '/μs:/ {print $2}')
  up_us() { awk '{ printf "%d", $1 * 1000000 }' /proc/uptime; }
  past_watchdog() { [ "$(up_us)" -gt $(( t_start + wd_us + 5000000 )) ]; }
  wait_until $(( wd_us / 1000000 + 60 )) past_watchdog
  to=$(journalctl -u picolet -q --no-pager | grep -c 'Watchdog timeout')
  if [ "$(prop MainPID)" = "$mp" ] && [ "$to" = 0 ] && active; then
    ok watchdog "WatchdogUSec=$wd: same MainPID $mp after $(( ($(up_us) - t_start) / 1000000 ))s, no watchdog timeout, last ping $(prop WatchdogTimestamp)"
  else fail watchdog "MainPID $(prop MainPID) (was $mp), watchdog timeouts $to"; fi
else
  skip watchdog "WatchdogUSec=$wd mode=$MODE"
fi

# --- systemctl restart: KillMode=process leaves the container and the reaper alone
mp=$(prop MainPID)
ts=$(date +%s.%N)
if timeout 150 systemctl restart picolet && active; then
  ok restart "active again after $(since "$ts")s, MainPID $mp -> $(prop MainPID)"
else fail restart "is-active=$(systemctl is-active picolet)"; diag; fi
same_pod restart-keeps-container "systemctl restart"
[ "$(reaper_pid)" = "$rpid" ] && ok restart-keeps-reaper "reaper $rpid kept" || fail restart-keeps-reaper "reaper now '$(reaper_pid)', was $rpid"

# --- SIGKILL to the main process only: Restart=always brings it back, containers untouched
mp=$(prop MainPID); nr=$(prop NRestarts)
systemctl kill --kill-whom=main -s KILL picolet
if wait_until 60 sh -c "[ \"\$(systemctl show -p NRestarts --value picolet)\" -gt $nr ] && [ \"\$(systemctl is-active picolet)\" = active ]"; then
  ok kill-restarts "SIGKILL to MainPID $mp: NRestarts $nr -> $(prop NRestarts), active, MainPID $(prop MainPID)"
else fail kill-restarts "NRestarts $(prop NRestarts) (was $nr), is-active $(systemctl is-active picolet)"; diag; fi
same_pod kill-keeps-container "SIGKILL + Restart=always"
[ "$(reaper_pid)" = "$rpid" ] && ok kill-keeps-reaper "reaper $rpid kept" || fail kill-keeps-reaper "reaper now '$(reaper_pid)', was $rpid"

# --- stop leaves pods running; the next start adopts them
systemctl stop picolet
if [ "$(systemctl is-active picolet)" != active ] && kill -0 "$cpid" 2>/dev/null; then
  ok stop-keeps-container "inactive, container pid $cpid alive"
else fail stop-keeps-container "is-active=$(systemctl is-active picolet), container alive: $(kill -0 $cpid 2>/dev/null && echo yes || echo no)"; fi
timeout 150 systemctl start picolet
same_pod start-adopts "stop + start"

echo "--- systemctl status picolet"; systemctl status --no-pager -l picolet | head -15
echo "--- journalctl -u picolet (last 25)"; journalctl -u picolet --no-pager -o short-monotonic | tail -25
echo "checks failed: $fails (elapsed $(el)s)"
exit $fails
