//go:build tools

// Package tools only records, for go mod tidy, the command build.sh builds.
package tools

import _ "sigs.k8s.io/metrics-server/cmd/metrics-server"
