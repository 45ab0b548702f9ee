package nodeapi_test

import (
	"context"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/cita-cloud/cita-node-operator/pkg/nodeapi"
	"github.com/cita-cloud/cita-node-operator/pkg/nodeapi/nodeapitest"
)

func dial(t *testing.T, addr string) *nodeapi.Client {
	t.Helper()
	c, err := nodeapi.Dial(addr)
	if err != nil {
		t.Fatalf("Dial(%s): %v", addr, err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func testContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func TestStatus(t *testing.T) {
	tests := map[string]struct {
		height uint64
		peers  int
		synced bool
		noSelf bool
		want   nodeapi.Status
		// GetBlockNumber is called only when the node leaves self_status out.
		wantBlockNumberCalls int
	}{
		"synced with peers": {
			height: 1234, peers: 2, synced: true,
			want: nodeapi.Status{
				Height: 1234, Address: "c17a0001", Peers: 2, Synced: true, Version: nodeapitest.Version,
				PeerStatus: []nodeapi.Peer{
					{Height: 1234, Address: "bee700", MultiAddress: "/dns4/peer-0/tcp/40000"},
					{Height: 1234, Address: "bee701", MultiAddress: "/dns4/peer-1/tcp/40000"},
				},
			},
		},
		"alone and syncing": {
			height: 7,
			want:   nodeapi.Status{Height: 7, Address: "c17a0001", Version: nodeapitest.Version},
		},
		"no self_status: height from GetBlockNumber": {
			height: 99, synced: true, noSelf: true,
			want:                 nodeapi.Status{Height: 99, Synced: true, Version: nodeapitest.Version},
			wantBlockNumberCalls: 1,
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			addr, srv := nodeapitest.Start(t)
			srv.SetHeight(tc.height)
			srv.SetPeers(tc.peers)
			srv.SetSynced(tc.synced)
			srv.OmitSelfStatus(tc.noSelf)

			got, err := dial(t, addr).Status(testContext(t))
			if err != nil {
				t.Fatalf("Status: %v", err)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("Status (-want +got):\n%s", diff)
			}
			if n := srv.Calls(nodeapitest.GetNodeStatus); n != 1 {
				t.Errorf("GetNodeStatus calls = %d, want 1", n)
			}
			if n := srv.Calls(nodeapitest.GetBlockNumber); n != tc.wantBlockNumberCalls {
				t.Errorf("GetBlockNumber calls = %d, want %d", n, tc.wantBlockNumberCalls)
			}
		})
	}
}

func TestBlockNumber(t *testing.T) {
	addr, srv := nodeapitest.Start(t)
	srv.SetHeight(42)
	got, err := dial(t, addr).BlockNumber(testContext(t))
	if err != nil || got != 42 {
		t.Errorf("BlockNumber = %d, %v; want 42, nil", got, err)
	}
}

// A node that does not answer must cost the caller its deadline, no more.
func TestDeadlineHonoured(t *testing.T) {
	addr, srv := nodeapitest.Start(t)
	srv.SetDelay(time.Minute)
	c := dial(t, addr)

	calls := map[string]func(context.Context) error{
		"Status":      func(ctx context.Context) error { _, err := c.Status(ctx); return err },
		"BlockNumber": func(ctx context.Context) error { _, err := c.BlockNumber(ctx); return err },
		"Healthy":     c.Healthy,
	}
	for name, call := range calls {
		t.Run(name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(t.Context(), 200*time.Millisecond)
			defer cancel()
			start := time.Now()
			err := call(ctx)
			if took := time.Since(start); took > 5*time.Second {
				t.Errorf("%s took %v with a 200ms deadline", name, took)
			}
			if status.Code(err) != codes.DeadlineExceeded {
				t.Errorf("%s: %v, want DeadlineExceeded", name, err)
			}
		})
	}
}

// The error says which call failed on which node, and keeps the gRPC code.
func TestFailingServer(t *testing.T) {
	addr, srv := nodeapitest.Start(t)
	srv.Fail(status.Error(codes.Unavailable, "controller not ready"))
	c := dial(t, addr)
	ctx := testContext(t)

	_, statusErr := c.Status(ctx)
	_, blockErr := c.BlockNumber(ctx)
	healthErr := c.Healthy(ctx)
	for call, err := range map[string]error{"GetNodeStatus": statusErr, "GetBlockNumber": blockErr, "health check": healthErr} {
		if err == nil {
			t.Errorf("%s: no error from a failing node", call)
			continue
		}
		for _, want := range []string{call, addr, "controller not ready"} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("%s: error %q does not say %q", call, err, want)
			}
		}
		if status.Code(err) != codes.Unavailable {
			t.Errorf("%s: code %v, want Unavailable", call, status.Code(err))
		}
	}

	srv.Fail(nil)
	if _, err := c.Status(ctx); err != nil {
		t.Errorf("Status after the node recovered: %v", err)
	}
}

// A node that is down (nothing listens) fails fast with Unavailable, not at
// the deadline: the client does not wait for the connection to come up.
func TestNodeDown(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := lis.Addr().String()
	lis.Close()

	_, err = dial(t, addr).Status(testContext(t))
	if status.Code(err) != codes.Unavailable || !strings.Contains(err.Error(), addr) {
		t.Errorf("Status on a closed port: %v, want Unavailable naming %s", err, addr)
	}
}

func TestHealthy(t *testing.T) {
	addr, srv := nodeapitest.Start(t)
	c := dial(t, addr)
	ctx := testContext(t)
	if err := c.Healthy(ctx); err != nil {
		t.Errorf("Healthy on a serving node: %v", err)
	}
	srv.SetServing(false)
	err := c.Healthy(ctx)
	if err == nil || !strings.Contains(err.Error(), "NOT_SERVING") {
		t.Errorf("Healthy on a node not serving: %v, want an error saying NOT_SERVING", err)
	}
	if n := srv.Calls(nodeapitest.HealthCheck); n != 2 {
		t.Errorf("health checks = %d, want 2", n)
	}
}
