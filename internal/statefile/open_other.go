//go:build !unix

package statefile

import "os"

// openFlags opens the state path for reading; where O_NOFOLLOW and
// O_NONBLOCK do not exist, Load checks the file's type after opening it.
const openFlags = os.O_RDONLY

func isSymlinkErr(error) bool { return false }
