//go:build !unix

package session

import "os"

// lockFile is a no-op where flock does not exist: the in-process mutex still
// serializes one server, and running two servers on one workspace is a
// Unix-only setup.
func lockFile(*os.File, bool) (func(), error) { return func() {}, nil }
