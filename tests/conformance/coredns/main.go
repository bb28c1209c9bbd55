// Command coredns is CoreDNS (the module's version, see go.mod) with only the
// plugins the conformance harness's Corefile uses (tests/conformance/run.sh):
// upstream's main imports all of them, cloud providers' SDKs included, which
// triples a cold build. Directive order is CoreDNS's own (dnsserver.Directives).
package main

import (
	"github.com/coredns/coredns/coremain"

	_ "github.com/coredns/coredns/plugin/bind"
	_ "github.com/coredns/coredns/plugin/cache"
	_ "github.com/coredns/coredns/plugin/errors"
	_ "github.com/coredns/coredns/plugin/kubernetes"
	_ "github.com/coredns/coredns/plugin/loadbalance"
	_ "github.com/coredns/coredns/plugin/log"
)

func main() {
	coremain.Run()
}
