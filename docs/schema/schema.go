// Package schema ships the JSON Schemas (draft 2020-12) of pdsafelist's
// JSON documents. The files are the published contract; the tests validate
// every golden output and a freshly saved plan against them.
package schema

import "embed"

// Base is the URL prefix of every schema's $id.
const Base = "https://github.com/pdsafelist/pdsafelist/raw/main/docs/schema/"

// The documents that have a schema, by file name.
const (
	Resolve = "resolve.schema.json" // resolve -o json
	Sync    = "sync.schema.json"    // sync -o json
	Plan    = "plan.schema.json"    // sync --plan-out
)

// FS holds the schema files, common.schema.json included.
//
//go:embed *.schema.json
var FS embed.FS
