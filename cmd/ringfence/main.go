// Command ringfence is the operator's command-line tool for a service that
// mounts the ringfence admin handler (package admin): it shows every
// breaker, switch, outbox and rollout, and acts on them during an incident.
//
// Usage:
//
//	ringfence [flags] status
//	ringfence [flags] breaker force-open|force-close|release NAME --reason TEXT
//	ringfence [flags] group force-open|force-close|release NAME [--key KEY] --reason TEXT
//	ringfence [flags] mode set NAME auto|manual|primary --reason TEXT
//	ringfence [flags] rollout pause|resume|promote|abort NAME --reason TEXT
//	ringfence [flags] outbox dead-letters NAME
//	ringfence [flags] outbox requeue NAME KEY --reason TEXT
//
// Flags, which may come anywhere on the line:
//
//	--url URL       the admin handler's address, such as http://127.0.0.1:8080/admin/
//	                (default: $RINGFENCE_URL)
//	--token TOKEN   the bearer token (default: $RINGFENCE_TOKEN, which keeps it
//	                out of the process list)
//	--json          print the server's JSON answer instead of a table
//	--timeout D     give up after D (default 10s)
//
// Every action needs a reason, which the service records with the token's
// name. ringfence exits 0 on success, 1 when the service refuses the
// request or cannot be reached (with the service's reason on stderr), and
// 2 for a command line it cannot use.
package main

import (
	"os"
)

func main() {
	os.Exit(run(os.Args[1:], os.Getenv, os.Stdout, os.Stderr))
}
