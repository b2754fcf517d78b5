package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"
)

// runPause is the process of a synthesized root container: it holds the
// cell's namespaces open, reaps zombies (it is PID 1 of its PID namespace)
// and exits 0 on SIGTERM or SIGINT.
func runPause(ctx context.Context) error {
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT, syscall.SIGCHLD)
	for {
		select {
		case <-ctx.Done():
			return nil
		case s := <-sigs:
			if s != syscall.SIGCHLD {
				return nil
			}
			for {
				var ws syscall.WaitStatus
				pid, err := syscall.Wait4(-1, &ws, syscall.WNOHANG, nil)
				if pid <= 0 || err != nil {
					break
				}
			}
		}
	}
}
