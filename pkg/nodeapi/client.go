// Package nodeapi reads a CITA-Cloud node's state from the node's own gRPC
// API: block height, peers and sync state from the controller's RPCService
// (port 50004 in cloud-config's layout), and the grpc.health.v1 check that
// every CITA-Cloud service serves. The client is generated from the minimal,
// wire-compatible protos in proto/; see proto/citacloud/*.proto for where
// they come from.
package nodeapi

import (
	"context"
	"encoding/hex"
	"fmt"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/cita-cloud/cita-node-operator/pkg/nodeapi/internal/pb/commonpb"
	"github.com/cita-cloud/cita-node-operator/pkg/nodeapi/internal/pb/controllerpb"
)

// DefaultTimeout bounds a call whose context has no deadline, so a caller
// that forgot one cannot leave a worker waiting on a node that never answers.
const DefaultTimeout = 10 * time.Second

// Status is what a node says about itself in GetNodeStatus.
type Status struct {
	// Height is the node's latest block (self_status.height), or
	// GetBlockNumber's answer when the node sent no self_status.
	Height uint64
	// Address is the node's address (self_status.address), in hex.
	Address string
	// Peers is how many peers the node is connected to (peers_count).
	Peers int
	// PeerStatus is what the node knows of each peer (peers_status).
	PeerStatus []Peer
	// Synced is is_sync: the node is not behind its peers.
	Synced bool
	// Version is the controller's version string.
	Version string
	// Danger is is_danger: the node was started in danger mode.
	Danger bool
	// InitBlockNumber is the height the node started from.
	InitBlockNumber uint64
	// WaitingBlock is the height the node is waiting for while it syncs.
	WaitingBlock uint64
}

// Peer is one entry of a node's peers_status.
type Peer struct {
	Height       uint64
	Address      string // hex
	MultiAddress string // node_net_info.multi_address
}

// Client talks to one node. It is safe for concurrent use.
type Client struct {
	addr   string
	conn   *grpc.ClientConn
	rpc    controllerpb.RPCServiceClient
	health healthpb.HealthClient
}

// Dial makes a client for the node API at addr (host:port). The node's gRPC
// ports are plain HTTP/2 inside the cluster, so there is no TLS. Dial does not
// connect: the first call does, within that call's deadline.
func Dial(addr string) (*Client, error) {
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return nil, fmt.Errorf("nodeapi: client for %s: %w", addr, err)
	}
	return &Client{
		addr:   addr,
		conn:   conn,
		rpc:    controllerpb.NewRPCServiceClient(conn),
		health: healthpb.NewHealthClient(conn),
	}, nil
}

// Close releases the connection.
func (c *Client) Close() error { return c.conn.Close() }

// Status reads GetNodeStatus. Errors name the method and the address and
// wrap the gRPC status, so status.Code(err) still tells Unavailable from
// DeadlineExceeded.
func (c *Client) Status(ctx context.Context) (Status, error) {
	ctx, cancel := bounded(ctx)
	defer cancel()
	ns, err := c.rpc.GetNodeStatus(ctx, &commonpb.Empty{})
	if err != nil {
		return Status{}, c.callError("GetNodeStatus", err)
	}
	s := Status{
		Peers:           int(ns.GetPeersCount()),
		Synced:          ns.GetIsSync(),
		Version:         ns.GetVersion(),
		Danger:          ns.GetIsDanger(),
		InitBlockNumber: ns.GetInitBlockNumber(),
		WaitingBlock:    ns.GetWaitingBlock(),
	}
	for _, p := range ns.GetPeersStatus() {
		s.PeerStatus = append(s.PeerStatus, Peer{
			Height:       p.GetHeight(),
			Address:      hex.EncodeToString(p.GetAddress()),
			MultiAddress: p.GetNodeNetInfo().GetMultiAddress(),
		})
	}
	if self := ns.GetSelfStatus(); self != nil {
		s.Height = self.GetHeight()
		s.Address = hex.EncodeToString(self.GetAddress())
		return s, nil
	}
	// A node still starting may not know itself yet; its block number is
	// still the height we report.
	if s.Height, err = c.blockNumber(ctx); err != nil {
		return Status{}, err
	}
	return s, nil
}

// BlockNumber reads the latest committed height (GetBlockNumber with
// flag=false; true would ask for the pending one).
func (c *Client) BlockNumber(ctx context.Context) (uint64, error) {
	ctx, cancel := bounded(ctx)
	defer cancel()
	return c.blockNumber(ctx)
}

func (c *Client) blockNumber(ctx context.Context) (uint64, error) {
	bn, err := c.rpc.GetBlockNumber(ctx, &controllerpb.Flag{Flag: false})
	if err != nil {
		return 0, c.callError("GetBlockNumber", err)
	}
	return bn.GetBlockNumber(), nil
}

// Healthy is the standard gRPC health check (what grpc-health-probe, the
// nodes' liveness probe, asks): nil only when the server says SERVING.
func (c *Client) Healthy(ctx context.Context) error {
	ctx, cancel := bounded(ctx)
	defer cancel()
	resp, err := c.health.Check(ctx, &healthpb.HealthCheckRequest{})
	if err != nil {
		return c.callError("health check", err)
	}
	if st := resp.GetStatus(); st != healthpb.HealthCheckResponse_SERVING {
		return fmt.Errorf("nodeapi: health check on %s: %s", c.addr, st)
	}
	return nil
}

func (c *Client) callError(call string, err error) error {
	return fmt.Errorf("nodeapi: %s on %s: %w", call, c.addr, err)
}

func bounded(ctx context.Context) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok {
		return ctx, func() {}
	}
	return context.WithTimeout(ctx, DefaultTimeout)
}
