package controller

import (
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func TestWrittenKeepsSyncsOffAStaleCache(t *testing.T) {
	var w written
	obj := func(rv string) metav1.Object { return &metav1.ObjectMeta{UID: "u", ResourceVersion: rv} }
	if w.behind(obj("5")) {
		t.Fatal("behind before any write")
	}
	w.record("u", "10")
	w.record("u", "8") // an older write's answer arriving late changes nothing
	if !w.behind(obj("9")) {
		t.Fatal("a cache at 9 after our write of 10 is not behind")
	}
	if w.behind(obj("10")) {
		t.Fatal("a cache at our write is behind")
	}
	if w.behind(obj("9")) {
		t.Fatal("caught up once, the record is gone: a later sync must not wait again")
	}
	w.record("u", "20")
	w.forget("u")
	if w.behind(obj("11")) {
		t.Fatal("a forgotten object is still waited for")
	}
	w.record("u", "not-a-number")
	if w.behind(obj("x")) {
		t.Fatal("an opaque resourceVersion is never behind")
	}
}
