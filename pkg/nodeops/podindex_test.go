package nodeops

import (
	"fmt"
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
)

// TestIndexedPodListerMatchesPlainLister: for every kind of selector, in
// every namespace, the indexed lister returns the same pods as client-go's
// lister, also after a pod's labels change.
func TestIndexedPodListerMatchesPlainLister(t *testing.T) {
	indexer := cache.NewIndexer(cache.MetaNamespaceKeyFunc, cache.Indexers{PodsByLabel: IndexPodLabels})
	pod := func(ns, name string, l map[string]string) *corev1.Pod {
		return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: l}}
	}
	pods := []*corev1.Pod{
		pod("ns1", "a1", map[string]string{"app": "node0", "chain": "c"}),
		pod("ns1", "a2", map[string]string{"app": "node1", "chain": "c"}),
		pod("ns1", "a3", map[string]string{"app": "node0", "chain": "d"}),
		pod("ns1", "none", nil),
		pod("ns2", "b1", map[string]string{"app": "node0", "chain": "c"}),
	}
	for _, p := range pods {
		if err := indexer.Add(p); err != nil {
			t.Fatal(err)
		}
	}
	plain, indexed := corelisters.NewPodLister(indexer), NewIndexedPodLister(indexer)
	selectors := []string{"app=node0", "app==node0", "app=node0,chain=c", "app in (node0)", "app in (node0,node1)",
		"app", "!app", "app!=node0", "app=node0,chain!=c", "app=absent", "chain=c,app", ""}
	names := func(ps []*corev1.Pod) []string {
		out := []string{}
		for _, p := range ps {
			out = append(out, p.Namespace+"/"+p.Name)
		}
		return out
	}
	check := func(t *testing.T) {
		t.Helper()
		for _, s := range selectors {
			sel, err := labels.Parse(s)
			if err != nil {
				t.Fatal(err)
			}
			for _, ns := range []string{"ns1", "ns2", "ns3", metav1.NamespaceAll} {
				want, err := plain.Pods(ns).List(sel)
				if err != nil {
					t.Fatal(err)
				}
				got, err := indexed.Pods(ns).List(sel)
				if err != nil {
					t.Fatal(err)
				}
				if diff := cmp.Diff(names(want), names(got), sortStrings); diff != "" {
					t.Errorf("namespace %s, selector %q (-plain +indexed):\n%s", ns, s, diff)
				}
			}
		}
		for _, sel := range []labels.Selector{labels.Nothing(), labels.Everything()} {
			want, _ := plain.Pods("ns1").List(sel)
			got, _ := indexed.Pods("ns1").List(sel)
			if diff := cmp.Diff(names(want), names(got), sortStrings); diff != "" {
				t.Errorf("selector %v (-plain +indexed):\n%s", sel, diff)
			}
		}
	}
	check(t)
	// a1 moves from node0 to node1; the index follows.
	moved := pods[0].DeepCopy()
	moved.Labels["app"] = "node1"
	if err := indexer.Update(moved); err != nil {
		t.Fatal(err)
	}
	check(t)
	got, _ := indexed.Pods("ns1").List(labels.SelectorFromSet(labels.Set{"app": "node0"}))
	if diff := cmp.Diff([]string{"ns1/a3"}, names(got)); diff != "" {
		t.Errorf("after the update, app=node0 in ns1 (-want +got):\n%s", diff)
	}
}

// chainOfPods indexes n pods of one chain, one node each, as a chain's
// StatefulSets make them: labels chain=c and node=node-<i>.
func chainOfPods(tb testing.TB, n int) cache.Indexer {
	tb.Helper()
	indexer := cache.NewIndexer(cache.MetaNamespaceKeyFunc, cache.Indexers{PodsByLabel: IndexPodLabels})
	for i := range n {
		node := fmt.Sprintf("node-%04d", i)
		p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: node + "-0",
			Labels: map[string]string{"chain": "c", "node": node}}}
		if err := indexer.Add(p); err != nil {
			tb.Fatal(err)
		}
	}
	return indexer
}

// TestIndexedPodListerReadsTheNodesEntry: a node's selector names its chain
// (sorted first, every pod of the chain) and its node; the lister reads the
// node's entry, not the chain's, and goes on doing so.
func TestIndexedPodListerReadsTheNodesEntry(t *testing.T) {
	l := NewIndexedPodLister(chainOfPods(t, 50)).(*indexedPodLister)
	sel := labels.SelectorFromSet(labels.Set{"chain": "c", "node": "node-0007"})
	for range 3 {
		got, err := l.Pods("ns").List(sel)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != 1 || got[0].Name != "node-0007-0" {
			t.Fatalf("List(%s) = %v, want node-0007-0 alone", sel, got)
		}
		if key := l.chosen["ns/"+sel.String()]; key != "node" {
			t.Errorf("label read from the index: %q, want node", key)
		}
	}
	// A chain-wide selector alone has one label to read.
	all, err := l.Pods("ns").List(labels.SelectorFromSet(labels.Set{"chain": "c"}))
	if err != nil || len(all) != 50 {
		t.Errorf("chain=c: %d pods, %v; want 50", len(all), err)
	}
}

// BenchmarkIndexedPodListNode: finding one node's pods among 500 nodes of
// a chain (every sync of every operation does it).
func BenchmarkIndexedPodListNode(b *testing.B) {
	l := NewIndexedPodLister(chainOfPods(b, 500))
	sel := labels.SelectorFromSet(labels.Set{"chain": "c", "node": "node-0250"})
	b.ReportAllocs()
	for b.Loop() {
		if pods, err := l.Pods("ns").List(sel); err != nil || len(pods) != 1 {
			b.Fatal(len(pods), err)
		}
	}
}
