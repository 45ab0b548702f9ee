package nodeapi_test

import (
	"bytes"
	"testing"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/cita-cloud/cita-node-operator/pkg/nodeapi/internal/pb/commonpb"
	"github.com/cita-cloud/cita-node-operator/pkg/nodeapi/internal/pb/controllerpb"
)

// The bytes below are encoded by hand from the field numbers in
// cita_cloud_proto 8495521f (protos/common.proto, protos/controller.proto),
// not from our .proto: renumbering or retyping a field there makes our
// generated code disagree with them, which a real node would not notice
// until it misread a status.

func TestNodeStatusWire(t *testing.T) {
	ours := &commonpb.NodeStatus{
		IsSync:  true,
		Version: "v6.7.4",
		SelfStatus: &commonpb.PeerStatus{
			Height:  1234,
			Address: []byte{0xab, 0xcd},
		},
		PeersCount: 2,
		PeersStatus: []*commonpb.PeerStatus{{
			Height:      1233,
			Address:     []byte{0x01},
			NodeNetInfo: &commonpb.NodeNetInfo{MultiAddress: "/dns4/n1/tcp/40000", Origin: 9},
		}},
		IsDanger:        true,
		InitBlockNumber: 100,
		WaitingBlock:    1235,
	}

	// message NodeNetInfo { string multi_address = 1; uint64 origin = 2; }
	var netInfo []byte
	netInfo = appendString(netInfo, 1, "/dns4/n1/tcp/40000")
	netInfo = appendVarint(netInfo, 2, 9)
	// message PeerStatus { uint64 height = 1; bytes address = 2; NodeNetInfo node_net_info = 3; }
	var self []byte
	self = appendVarint(self, 1, 1234)
	self = appendBytes(self, 2, []byte{0xab, 0xcd})
	var peer []byte
	peer = appendVarint(peer, 1, 1233)
	peer = appendBytes(peer, 2, []byte{0x01})
	peer = appendBytes(peer, 3, netInfo)
	// message NodeStatus { bool is_sync = 1; string version = 2; PeerStatus self_status = 3;
	//   uint64 peers_count = 4; repeated PeerStatus peers_status = 5; bool is_danger = 6;
	//   uint64 init_block_number = 7; uint64 waiting_block = 8; }
	var want []byte
	want = appendVarint(want, 1, 1)
	want = appendString(want, 2, "v6.7.4")
	want = appendBytes(want, 3, self)
	want = appendVarint(want, 4, 2)
	want = appendBytes(want, 5, peer)
	want = appendVarint(want, 6, 1)
	want = appendVarint(want, 7, 100)
	want = appendVarint(want, 8, 1235)

	checkWire(t, ours, want, &commonpb.NodeStatus{})
}

func TestBlockNumberWire(t *testing.T) {
	// message Flag { bool flag = 1; }
	checkWire(t, &controllerpb.Flag{Flag: true}, appendVarint(nil, 1, 1), &controllerpb.Flag{})
	// message BlockNumber { uint64 block_number = 1; }
	checkWire(t, &controllerpb.BlockNumber{BlockNumber: 1 << 40}, appendVarint(nil, 1, 1<<40), &controllerpb.BlockNumber{})
}

// The method paths a node routes on: /<proto package>.<service>/<method>.
func TestMethodPaths(t *testing.T) {
	for got, want := range map[string]string{
		controllerpb.RPCService_GetNodeStatus_FullMethodName:  "/controller.RPCService/GetNodeStatus",
		controllerpb.RPCService_GetBlockNumber_FullMethodName: "/controller.RPCService/GetBlockNumber",
	} {
		if got != want {
			t.Errorf("method path %q, upstream's is %q", got, want)
		}
	}
	for msg, want := range map[proto.Message]string{
		&commonpb.Empty{}:           "common.Empty",
		&commonpb.NodeStatus{}:      "common.NodeStatus",
		&controllerpb.Flag{}:        "controller.Flag",
		&controllerpb.BlockNumber{}: "controller.BlockNumber",
	} {
		if got := string(proto.MessageName(msg)); got != want {
			t.Errorf("message %s, upstream's is %s", got, want)
		}
	}
}

// checkWire marshals ours and compares it with the hand-encoded bytes, then
// decodes those bytes into fresh and compares the message with ours: both
// directions a node's answer and our request travel.
func checkWire(t *testing.T, ours proto.Message, want []byte, fresh proto.Message) {
	t.Helper()
	got, err := proto.MarshalOptions{Deterministic: true}.Marshal(ours)
	if err != nil {
		t.Fatalf("marshal %T: %v", ours, err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%T encodes as\n%x\nupstream's field numbers give\n%x", ours, got, want)
	}
	if err := proto.Unmarshal(want, fresh); err != nil {
		t.Fatalf("unmarshal upstream bytes into %T: %v", fresh, err)
	}
	if !proto.Equal(fresh, ours) {
		t.Errorf("upstream bytes decode as %v, want %v", fresh, ours)
	}
}

func appendVarint(b []byte, num protowire.Number, v uint64) []byte {
	b = protowire.AppendTag(b, num, protowire.VarintType)
	return protowire.AppendVarint(b, v)
}

func appendBytes(b []byte, num protowire.Number, v []byte) []byte {
	b = protowire.AppendTag(b, num, protowire.BytesType)
	return protowire.AppendBytes(b, v)
}

func appendString(b []byte, num protowire.Number, v string) []byte {
	b = protowire.AppendTag(b, num, protowire.BytesType)
	return protowire.AppendString(b, v)
}
