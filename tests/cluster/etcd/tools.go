//go:build tools

// Package tools only records, for go mod tidy, the command build.sh builds.
package tools

import _ "go.etcd.io/etcd/server/v3"
