package operations

import (
	"strconv"
	"sync"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

// written remembers the resourceVersion of the controller's own last write
// to each object, so that a sync does not act on a cache that has not yet
// seen that write: every write it then made would be refused as a conflict
// (measured: more than one conflict per operation at N=500 without this).
type written struct {
	mu  sync.Mutex
	rvs map[types.UID]int64
}

func (w *written) record(uid types.UID, resourceVersion string) {
	rv, err := strconv.ParseInt(resourceVersion, 10, 64)
	if err != nil || uid == "" {
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.rvs == nil {
		w.rvs = map[types.UID]int64{}
	}
	if rv > w.rvs[uid] {
		w.rvs[uid] = rv
	}
}

// behind reports whether the cached object is older than the controller's
// own last write to it. resourceVersions are opaque to clients in general;
// where they do not parse as integers nothing is ever behind.
func (w *written) behind(o metav1.Object) bool {
	rv, err := strconv.ParseInt(o.GetResourceVersion(), 10, 64)
	if err != nil {
		return false
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	last, ok := w.rvs[o.GetUID()]
	if !ok {
		return false
	}
	if rv >= last {
		delete(w.rvs, o.GetUID()) // the cache has caught up
		return false
	}
	return true
}

// forget drops what is remembered of a deleted object.
func (w *written) forget(uid types.UID) {
	w.mu.Lock()
	defer w.mu.Unlock()
	delete(w.rvs, uid)
}

// created remembers the Jobs this controller created until its cache shows
// them, so that a sync between the create and the Job's watch event (the
// operation's own status write arrives on another watch, often first) waits
// for the cache instead of sending the create again.
type created struct {
	mu sync.Mutex
	at map[string]time.Time // namespace/name → when created
}

// createdWait bounds how long a create is trusted over the cache: a Job
// deleted by someone before the cache ever saw it is created again after
// it.
const createdWait = 10 * time.Second

func (c *created) record(key string, now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.at == nil {
		c.at = map[string]time.Time{}
	}
	for k, t := range c.at { // those never seen (their operation deleted)
		if now.Sub(t) >= createdWait {
			delete(c.at, k)
		}
	}
	c.at[key] = now
}

// pending reports whether key was created less than createdWait ago and the
// cache has not shown it yet.
func (c *created) pending(key string, now time.Time) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	at, ok := c.at[key]
	if ok && now.Sub(at) >= createdWait {
		delete(c.at, key)
		return false
	}
	return ok
}

// seen drops key: the cache shows it.
func (c *created) seen(key string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.at, key)
}
