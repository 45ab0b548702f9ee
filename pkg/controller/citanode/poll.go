package citanode

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strconv"
	"sync"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/klog/v2"

	citav1 "github.com/cita-cloud/cita-node-operator/pkg/apis/citacloud/v1"
	"github.com/cita-cloud/cita-node-operator/pkg/nodeapi"
)

// AnnotationAPIAddress, on a CitaNode, is where the operator reaches the
// node's controller gRPC API (host:port), in place of its Service,
// <name>.<namespace>.svc:50004: for an operator that runs outside the
// cluster's network.
const AnnotationAPIAddress = "citacloud.rivtower.com/api-address"

// Reasons of the Synced and Progressing conditions.
const (
	ReasonSynced        = "Synced"
	ReasonSyncing       = "Syncing"
	ReasonNoAnswer      = "NoAnswer"
	ReasonHeightGrowing = "HeightGrowing"
	ReasonHeightStalled = "HeightStalled"
)

// PollConfig bounds how the controller asks the nodes for their status.
type PollConfig struct {
	// Interval between two polls of one node; each is jittered by up to
	// a tenth so that nodes created together are not polled together.
	Interval time.Duration
	// Timeout of one poll.
	Timeout time.Duration
	// Concurrency caps the polls in flight.
	Concurrency int
	// StallWindow: a Ready node whose height has not grown for this long
	// is a stalled chain (Progressing=False and a Warning event).
	StallWindow time.Duration
	// HeightWrite: a height change alone is written to status at most
	// this often.
	HeightWrite time.Duration
}

// DefaultPollConfig holds the defaults.
func DefaultPollConfig() PollConfig {
	return PollConfig{Interval: 30 * time.Second, Timeout: 5 * time.Second, Concurrency: 16, StallWindow: 5 * time.Minute, HeightWrite: time.Minute}
}

// poller asks nodes for their status and remembers what they said.
type poller struct {
	cfg   PollConfig
	slots chan struct{}
	mu    sync.Mutex
	seen  map[cache.ObjectName]*answers
	dial  func(addr string) (*nodeapi.Client, error)
}

// answers is what one node said: its height and since when it has not
// grown, and when its height was last written to status.
type answers struct {
	height      uint64
	heightSince time.Time
	lastWrite   time.Time
	lastPoll    time.Time
}

func newPoller(cfg PollConfig) *poller {
	return &poller{cfg: cfg, slots: make(chan struct{}, max(cfg.Concurrency, 1)), seen: map[cache.ObjectName]*answers{}, dial: nodeapi.Dial}
}

func apiAddress(cn *citav1.CitaNode) string {
	if a := cn.Annotations[AnnotationAPIAddress]; a != "" {
		return a
	}
	return cn.Name + "." + cn.Namespace + ".svc:" + strconv.Itoa(controllerPort)
}

// pollStatus asks a running node for its height, peers and sync state and
// sets them in cn's status, with the Synced and Progressing conditions. It
// returns when to poll again. The status is changed (and so written) only
// when a condition changes, the peers or sync state change, or the height
// changed and was last written at least HeightWrite ago.
func (c *Controller) pollStatus(ctx context.Context, cn *citav1.CitaNode) time.Duration {
	p := c.poller
	key := cache.MetaObjectToName(cn)
	now := c.deps.Clock.Now()
	p.mu.Lock()
	a := p.seen[key]
	if a == nil {
		a = &answers{}
		p.seen[key] = a
	}
	since := now.Sub(a.lastPoll)
	if !a.lastPoll.IsZero() && since < p.cfg.Interval {
		// Synced for another reason (an event) between two polls.
		p.mu.Unlock()
		return p.cfg.Interval - since
	}
	a.lastPoll = now
	p.mu.Unlock()
	again := p.cfg.Interval + time.Duration(rand.Int64N(int64(p.cfg.Interval/10)+1))
	select {
	case p.slots <- struct{}{}:
		defer func() { <-p.slots }()
	case <-ctx.Done():
		return again
	}
	status, err := c.askNode(ctx, cn)
	st := &cn.Status
	if err != nil {
		klog.FromContext(ctx).V(2).Info("The node's API did not answer", "err", err)
		c.setCondition(cn, citav1.NodeConditionSynced, metav1.ConditionUnknown, ReasonNoAnswer, "the node's API at %s did not answer: %v", apiAddress(cn), err)
		return again
	}
	p.mu.Lock()
	if a.heightSince.IsZero() || status.Height > a.height {
		a.height, a.heightSince = status.Height, now
	}
	p.mu.Unlock()

	heightChanged := st.BlockHeight != int64(status.Height)
	if heightChanged && (st.LastAnswerTime == nil || now.Sub(a.lastWrite) >= p.cfg.HeightWrite || st.BlockHeight == 0) {
		st.BlockHeight = int64(status.Height)
		st.LastAnswerTime = ptrTime(now)
		a.lastWrite = now
	}
	st.PeerCount = int32(status.Peers)
	st.Synced = &status.Synced
	st.NodeVersion = status.Version
	if status.Synced {
		c.setCondition(cn, citav1.NodeConditionSynced, metav1.ConditionTrue, ReasonSynced, "the node says it is in sync")
	} else {
		c.setCondition(cn, citav1.NodeConditionSynced, metav1.ConditionFalse, ReasonSyncing, "the node says it is syncing")
	}
	if stalled := now.Sub(a.heightSince); meta.IsStatusConditionTrue(st.Conditions, citav1.NodeConditionReady) && stalled >= p.cfg.StallWindow {
		wasStalled := meta.IsStatusConditionPresentAndEqual(st.Conditions, citav1.NodeConditionProgressing, metav1.ConditionFalse)
		// The message names when, not how long: it stays the same from
		// poll to poll, and so does the status.
		c.setCondition(cn, citav1.NodeConditionProgressing, metav1.ConditionFalse, ReasonHeightStalled, "the height has stayed at %d since %s", a.height, a.heightSince.UTC().Format(time.RFC3339))
		if !wasStalled {
			c.deps.Recorder.Eventf(cn, "Warning", ReasonHeightStalled, "the height has stayed at %d for %s: the chain may be stalled", a.height, stalled.Round(time.Second))
		}
	} else {
		c.setCondition(cn, citav1.NodeConditionProgressing, metav1.ConditionTrue, ReasonHeightGrowing, "the height grows")
	}
	c.metrics.observe(cn, status, now)
	return again
}

func (c *Controller) askNode(ctx context.Context, cn *citav1.CitaNode) (nodeapi.Status, error) {
	ctx, cancel := context.WithTimeout(ctx, c.poller.cfg.Timeout)
	defer cancel()
	client, err := c.poller.dial(apiAddress(cn))
	if err != nil {
		return nodeapi.Status{}, err
	}
	defer client.Close()
	s, err := client.Status(ctx)
	if err != nil {
		return s, fmt.Errorf("%w", err)
	}
	return s, nil
}

// forget drops what a deleted node said.
func (p *poller) forget(key cache.ObjectName) {
	p.mu.Lock()
	defer p.mu.Unlock()
	delete(p.seen, key)
}

func ptrTime(t time.Time) *metav1.Time {
	mt := metav1.NewTime(t)
	return &mt
}
