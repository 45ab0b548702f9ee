package main

import (
	"strings"
	"testing"
)

// TestLeaderIdentity: the pod's name when the chart gives it, and unique
// per process: two operators of one machine's host network (one host
// name, pid 1 each) never share an identity.
func TestLeaderIdentity(t *testing.T) {
	t.Setenv("POD_NAME", "cita-node-operator-5d8f7c-abcde")
	a, err := leaderIdentity()
	if err != nil {
		t.Fatal(err)
	}
	b, _ := leaderIdentity()
	if !strings.HasPrefix(a, "cita-node-operator-5d8f7c-abcde_") || a == b {
		t.Fatalf("identities %q and %q", a, b)
	}
	t.Setenv("POD_NAME", "")
	if c, err := leaderIdentity(); err != nil || strings.HasPrefix(c, "_") {
		t.Fatalf("without POD_NAME: %q, %v", c, err)
	}
}
