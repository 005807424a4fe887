package xhttp

import (
	"fmt"
	"os"
)

func debugf(f string, a ...any) {
	if os.Getenv("XHTTP_DEBUG") != "" {
		fmt.Fprintf(os.Stderr, f+"\n", a...)
	}
}
