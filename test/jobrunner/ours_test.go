//go:build linux

package jobrunner

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// TestRunnerLeavesTheImageItIsTold: a Job pod of LeaveImage is not the
// runner's, whatever its label; any other labelled pod is.
func TestRunnerLeavesTheImageItIsTold(t *testing.T) {
	r := &Runner{opts: Options{Label: "run-me", LeaveImage: "example.invalid/instant:1"}}
	pod := func(image string) *corev1.Pod {
		return &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"run-me": "yes"}},
			Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "job", Image: image}}},
		}
	}
	if r.ours(pod("example.invalid/instant:1")) {
		t.Error("the runner takes a pod of the image it must leave")
	}
	if !r.ours(pod("example.invalid/cita-node-job:1")) {
		t.Error("the runner leaves a labelled pod of another image")
	}
	r.opts.LeaveImage = ""
	if !r.ours(pod("example.invalid/instant:1")) {
		t.Error("with no LeaveImage the runner leaves a labelled pod")
	}
}
