package nodeops

import (
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
// PodsByLabel index. A namespaced List whose selector requires a label to
// equal one value reads only the pods carrying that label from the index,
// then applies the whole selector; other selectors, and lists across all
// namespaces, go to the plain lister. It
// returns exactly what the plain lister returns: finding a node's pods
// (every sync, hundreds of nodes) costs the node's pods, not the
// namespace's.
func NewIndexedPodLister(indexer cache.Indexer) corelisters.PodLister {
	return &indexedPodLister{PodLister: corelisters.NewPodLister(indexer), indexer: indexer}
}

type indexedPodLister struct {
	corelisters.PodLister
	indexer cache.Indexer
}

func (l *indexedPodLister) Pods(namespace string) corelisters.PodNamespaceLister {
	return &indexedPodNamespaceLister{PodNamespaceLister: l.PodLister.Pods(namespace), indexer: l.indexer, namespace: namespace}
}

type indexedPodNamespaceLister struct {
	corelisters.PodNamespaceLister
	indexer   cache.Indexer
	namespace string
}

func (l *indexedPodNamespaceLister) List(selector labels.Selector) ([]*corev1.Pod, error) {
	key, ok := equalityKey(selector)
	if !ok || l.namespace == metav1.NamespaceAll {
		return l.PodNamespaceLister.List(selector)
	}
	objs, err := l.indexer.ByIndex(PodsByLabel, labelKey(l.namespace, key.key, key.value))
	if err != nil {
		return nil, err
	}
	var out []*corev1.Pod
	for _, o := range objs {
		if pod := o.(*corev1.Pod); selector.Matches(labels.Set(pod.Labels)) {
			out = append(out, pod)
		}
	}
	return out, nil
}

type labelPair struct{ key, value string }

// equalityKey is a label the selector requires to have exactly one value.
func equalityKey(selector labels.Selector) (labelPair, bool) {
	if selector == nil {
		return labelPair{}, false
	}
	reqs, selectable := selector.Requirements()
	if !selectable {
		return labelPair{}, false
	}
	for _, r := range reqs {
		switch r.Operator() {
		case selection.Equals, selection.DoubleEquals, selection.In:
			if vals := r.Values(); vals.Len() == 1 {
				return labelPair{r.Key(), vals.UnsortedList()[0]}, true
			}
		}
	}
	return labelPair{}, false
}
