//go:build unix

package statedb

import "syscall"

const noFollow = syscall.O_NOFOLLOW

var errLoop = syscall.ELOOP
