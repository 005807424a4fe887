//go:build !linux

package censorlab

import "errors"

// ErrNeedRoot is returned by NetnsPath where the netns mode cannot run.
var ErrNeedRoot = errors.New("censorlab: the netns mode needs Linux, root and the ip command")

// NetnsPath is only available on Linux.
func NetnsPath(name string) (Path, func() error, error) { return Path{}, nil, ErrNeedRoot }
