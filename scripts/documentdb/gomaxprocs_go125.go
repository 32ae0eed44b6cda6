// Added by threadview's scripts/stack to its build copy of FerretDB v2.5.0's module: upstream's
// cmd/ferretdb/gomaxprocs.go is built only before Go 1.25 (`//go:build !go1.25`), which leaves
// setGOMAXPROCS undefined with a newer Go. Go 1.25+ sets GOMAXPROCS from the container's CPU
// limit by itself, so a no-op is all that is missing.

//go:build go1.25

package main

import "log/slog"

func setGOMAXPROCS(*slog.Logger) {}
