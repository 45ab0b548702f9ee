package nodeops

import (
	"sync"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/selection"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
)

// PodsByLabel is the name of the pod index IndexPodLabels builds.
const PodsByLabel = "byLabel"

// IndexPodLabels indexes a pod under namespace/key=value for each of its
// labels.
func IndexPodLabels(obj any) ([]string, error) {
	pod, ok := obj.(*corev1.Pod)
	if !ok {
		return nil, nil
	}
	keys := make([]string, 0, len(pod.Labels))
	for k, v := range pod.Labels {
		keys = append(keys, labelKey(pod.Namespace, k, v))
	}
	return keys, nil
}

func labelKey(namespace, key, value string) string { return namespace + "/" + key + "=" + value }

// NewIndexedPodLister is a PodLister over an indexer that has the
// PodsByLabel index. A namespaced List whose selector requires labels to
// equal one value each reads only the pods of the most selective of those
// labels from the index, then applies the whole selector; other selectors,
// and lists across all namespaces, go to the plain lister. It returns
// exactly what the plain lister returns: finding a node's pods (every sync,
// hundreds of nodes) costs the node's pods, not the namespace's or the
// chain's.
func NewIndexedPodLister(indexer cache.Indexer) corelisters.PodLister {
	return &indexedPodLister{PodLister: corelisters.NewPodLister(indexer), indexer: indexer, chosen: map[string]string{}}
}

type indexedPodLister struct {
	corelisters.PodLister
	indexer cache.Indexer

	mu sync.Mutex
	// chosen remembers, by namespace and selector, the label whose index
	// entry was the smallest when last measured: a node's selector names
	// its chain (every pod of the chain) before its node (one pod).
	chosen map[string]string
}

// maxChosen bounds the memory of chosen labels (a few per workload).
const maxChosen = 10000

func (l *indexedPodLister) Pods(namespace string) corelisters.PodNamespaceLister {
	return &indexedPodNamespaceLister{PodNamespaceLister: l.PodLister.Pods(namespace), lister: l, namespace: namespace}
}

type indexedPodNamespaceLister struct {
	corelisters.PodNamespaceLister
	lister    *indexedPodLister
	namespace string
}

func (l *indexedPodNamespaceLister) List(selector labels.Selector) ([]*corev1.Pod, error) {
	pairs := equalityPairs(selector)
	if len(pairs) == 0 || l.namespace == metav1.NamespaceAll {
		return l.PodNamespaceLister.List(selector)
	}
	pair, memo := pairs[0], ""
	if len(pairs) > 1 {
		memo = l.namespace + "/" + selector.String()
		pair = l.lister.choose(memo, l.namespace, pairs)
	}
	objs, err := l.lister.indexer.ByIndex(PodsByLabel, labelKey(l.namespace, pair.key, pair.value))
	if err != nil {
		return nil, err
	}
	var out []*corev1.Pod
	for _, o := range objs {
		if pod := o.(*corev1.Pod); selector.Matches(labels.Set(pod.Labels)) {
			out = append(out, pod)
		}
	}
	if memo != "" && len(objs) > 2*len(out)+4 {
		// Mostly pods of no interest: measure again next time.
		l.lister.forget(memo)
	}
	return out, nil
}

// choose returns the remembered label for memo, or measures the index
// entries of pairs and remembers the smallest.
func (l *indexedPodLister) choose(memo, namespace string, pairs []labelPair) labelPair {
	l.mu.Lock()
	key, ok := l.chosen[memo]
	l.mu.Unlock()
	if ok {
		for _, p := range pairs {
			if p.key == key {
				return p
			}
		}
	}
	best, bestSize := pairs[0], -1
	for _, p := range pairs {
		keys, err := l.indexer.IndexKeys(PodsByLabel, labelKey(namespace, p.key, p.value))
		if err != nil {
			continue
		}
		if bestSize < 0 || len(keys) < bestSize {
			best, bestSize = p, len(keys)
		}
	}
	l.mu.Lock()
	if len(l.chosen) >= maxChosen {
		clear(l.chosen)
	}
	l.chosen[memo] = best.key
	l.mu.Unlock()
	return best
}

func (l *indexedPodLister) forget(memo string) {
	l.mu.Lock()
	delete(l.chosen, memo)
	l.mu.Unlock()
}

type labelPair struct{ key, value string }

// equalityPairs are the labels the selector requires to have exactly one
// value.
func equalityPairs(selector labels.Selector) []labelPair {
	if selector == nil {
		return nil
	}
	reqs, selectable := selector.Requirements()
	if !selectable {
		return nil
	}
	var out []labelPair
	for _, r := range reqs {
		switch r.Operator() {
		case selection.Equals, selection.DoubleEquals, selection.In:
			if vals := r.Values(); vals.Len() == 1 {
				out = append(out, labelPair{r.Key(), vals.UnsortedList()[0]})
			}
		}
	}
	return out
}
