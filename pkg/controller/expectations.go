package controller

import (
	"strconv"
	"sync"

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
