// Package nodeapitest serves a fake CITA-Cloud node API on loopback for
// tests: the controller's RPCService (GetBlockNumber, GetNodeStatus) and
// grpc.health.v1.Health, with a settable height, peer count and sync state.
// It counts calls and can be made slow or failing, so a test can check what
// a caller does when a node is behind, stuck or down.
package nodeapitest

import (
	"context"
	"fmt"
	"net"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	"github.com/cita-cloud/cita-node-operator/pkg/nodeapi/internal/pb/commonpb"
	"github.com/cita-cloud/cita-node-operator/pkg/nodeapi/internal/pb/controllerpb"
)

// The method names Calls counts under.
const (
	GetBlockNumber = "GetBlockNumber"
	GetNodeStatus  = "GetNodeStatus"
	HealthCheck    = "Check"
)

// Version is the version string a new Server reports.
const Version = "v6.7.4-fake"

// Server is a fake node. Start's is a synced node at height 0 with no peers,
// serving its health check. All methods are safe for concurrent use.
type Server struct {
	controllerpb.UnimplementedRPCServiceServer
	healthpb.UnimplementedHealthServer

	mu      sync.Mutex
	height  uint64
	peers   int
	synced  bool
	version string
	address []byte
	noSelf  bool
	serving bool
	delay   time.Duration
	err     error
	calls   map[string]int
}

// Start serves a new Server on a loopback port until the test ends and
// returns its address (host:port) for nodeapi.Dial.
func Start(t testing.TB) (string, *Server) {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("nodeapitest: listen: %v", err)
	}
	s := &Server{
		synced:  true,
		version: Version,
		address: []byte{0xc1, 0x7a, 0x00, 0x01},
		serving: true,
		calls:   map[string]int{},
	}
	gs := grpc.NewServer()
	controllerpb.RegisterRPCServiceServer(gs, s)
	healthpb.RegisterHealthServer(gs, s)
	go func() { _ = gs.Serve(lis) }()
	// Stop, not GracefulStop: a slow handler must not hold the test up.
	t.Cleanup(gs.Stop)
	return lis.Addr().String(), s
}

// SetHeight sets the node's latest block.
func (s *Server) SetHeight(h uint64) { s.set(func() { s.height = h }) }

// SetPeers sets how many peers the node reports, each at the node's height.
func (s *Server) SetPeers(n int) { s.set(func() { s.peers = n }) }

// SetSynced sets is_sync.
func (s *Server) SetSynced(synced bool) { s.set(func() { s.synced = synced }) }

// SetVersion sets the version string.
func (s *Server) SetVersion(v string) { s.set(func() { s.version = v }) }

// OmitSelfStatus makes GetNodeStatus leave self_status out, as a node that
// does not know its own height yet might; GetBlockNumber still answers.
func (s *Server) OmitSelfStatus(omit bool) { s.set(func() { s.noSelf = omit }) }

// SetServing sets what the health check answers: SERVING or NOT_SERVING.
func (s *Server) SetServing(serving bool) { s.set(func() { s.serving = serving }) }

// SetDelay makes every call wait d before it answers (or until the caller
// gives up, whichever is first); 0 answers at once.
func (s *Server) SetDelay(d time.Duration) { s.set(func() { s.delay = d }) }

// Fail makes every call, the health check included, return err; nil stops
// failing. An error made with status.Error reaches the client with its code,
// any other as codes.Unknown.
func (s *Server) Fail(err error) { s.set(func() { s.err = err }) }

// Calls is how many times method (GetBlockNumber, GetNodeStatus,
// HealthCheck) was called, failed and slow calls included.
func (s *Server) Calls(method string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.calls[method]
}

func (s *Server) set(f func()) {
	s.mu.Lock()
	defer s.mu.Unlock()
	f()
}

// call counts method, waits out the delay and returns the failure set with
// Fail, if any.
func (s *Server) call(ctx context.Context, method string) error {
	s.mu.Lock()
	s.calls[method]++
	delay, err := s.delay, s.err
	s.mu.Unlock()
	if delay > 0 {
		timer := time.NewTimer(delay)
		defer timer.Stop()
		select {
		case <-timer.C:
		case <-ctx.Done():
			return status.FromContextError(ctx.Err()).Err()
		}
	}
	return err
}

// GetBlockNumber serves controller.RPCService/GetBlockNumber: the height.
func (s *Server) GetBlockNumber(ctx context.Context, _ *controllerpb.Flag) (*controllerpb.BlockNumber, error) {
	if err := s.call(ctx, GetBlockNumber); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return &controllerpb.BlockNumber{BlockNumber: s.height}, nil
}

// GetNodeStatus serves controller.RPCService/GetNodeStatus.
func (s *Server) GetNodeStatus(ctx context.Context, _ *commonpb.Empty) (*commonpb.NodeStatus, error) {
	if err := s.call(ctx, GetNodeStatus); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	ns := &commonpb.NodeStatus{
		IsSync:      s.synced,
		Version:     s.version,
		SelfStatus:  &commonpb.PeerStatus{Height: s.height, Address: s.address},
		PeersCount:  uint64(s.peers),
		PeersStatus: make([]*commonpb.PeerStatus, 0, s.peers),
	}
	if s.noSelf {
		ns.SelfStatus = nil
	}
	for i := range s.peers {
		ns.PeersStatus = append(ns.PeersStatus, &commonpb.PeerStatus{
			Height:      s.height,
			Address:     []byte{0xbe, 0xe7, byte(i)},
			NodeNetInfo: &commonpb.NodeNetInfo{MultiAddress: fmt.Sprintf("/dns4/peer-%d/tcp/40000", i), Origin: uint64(i + 1)},
		})
	}
	return ns, nil
}

// Check serves grpc.health.v1.Health/Check.
func (s *Server) Check(ctx context.Context, _ *healthpb.HealthCheckRequest) (*healthpb.HealthCheckResponse, error) {
	if err := s.call(ctx, HealthCheck); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.serving {
		return &healthpb.HealthCheckResponse{Status: healthpb.HealthCheckResponse_NOT_SERVING}, nil
	}
	return &healthpb.HealthCheckResponse{Status: healthpb.HealthCheckResponse_SERVING}, nil
}

// Satisfied at compile time rather than at RegisterXServer's first call.
var (
	_ controllerpb.RPCServiceServer = (*Server)(nil)
	_ healthpb.HealthServer         = (*Server)(nil)
)
