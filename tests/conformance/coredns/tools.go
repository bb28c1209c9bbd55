//go:build tools

// Package tools only records, for go mod tidy, the command tests/cluster/build.sh coredns builds.
package tools

import _ "github.com/coredns/coredns"
