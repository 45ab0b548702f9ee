package localcluster

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"
)

// startCluster starts a cluster for t, or skips t when bin/ is not built
// (fails instead with CITA_E2E_REQUIRED=1, as CI sets).
func startCluster(t *testing.T, opts Options) *Cluster {
	t.Helper()
	binDir, err := DefaultBinDir()
	if err != nil {
		t.Fatal(err)
	}
	if missing := MissingBinaries(binDir); len(missing) > 0 {
		msg := "local control plane binaries missing in " + binDir + ": " + strings.Join(missing, ", ") +
			" (build them with hack/tools/build.sh)"
		if os.Getenv("CITA_E2E_REQUIRED") == "1" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	opts.BinDir = binDir
	if opts.WorkDir == "" {
		opts.WorkDir = t.TempDir()
	}
	opts.Logf = t.Logf
	c, err := Start(t.Context(), opts)
	if c == nil && err == nil {
		t.Fatal("Start returned neither a cluster nor an error")
	}
	// Cleanups run last-in first-out: Stop first, then the logs of a failed test.
	t.Cleanup(func() {
		if !t.Failed() {
			return
		}
		logs, _ := filepath.Glob(filepath.Join(opts.WorkDir, "logs", "*.log"))
		for _, l := range logs {
			t.Logf("--- end of %s:\n%s", l, tail(l, 40))
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := c.Stop(); err != nil {
			t.Errorf("stop: %v", err)
		}
	})
	return c
}

func TestStatefulSetWithVolumeOnKwok(t *testing.T) {
	c := startCluster(t, Options{LeavePodsWithLabel: JobPodLabel, LeavePodsOnNodes: []string{"runner-0"}})
	ctx := t.Context()
	client, err := kubernetes.NewForConfig(c.RESTConfig())
	if err != nil {
		t.Fatal(err)
	}
	const ns = "localcluster-test"
	if _, err := client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}

	sts := newStatefulSet(ns, "node", 1)
	if _, err := client.AppsV1().StatefulSets(ns).Create(ctx, sts, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "pod node-0 Running", func(ctx context.Context) (bool, error) {
		pod, err := client.CoreV1().Pods(ns).Get(ctx, "node-0", metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return false, nil
		}
		return err == nil && pod.Status.Phase == corev1.PodRunning, err
	})

	waitFor(t, "pvc data-node-0 Bound", func(ctx context.Context) (bool, error) {
		pvc, err := client.CoreV1().PersistentVolumeClaims(ns).Get(ctx, "data-node-0", metav1.GetOptions{})
		return err == nil && pvc.Status.Phase == corev1.ClaimBound, err
	})
	pvc, err := client.CoreV1().PersistentVolumeClaims(ns).Get(ctx, "data-node-0", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got := ptr.Deref(pvc.Spec.StorageClassName, ""); got != "standard" {
		t.Errorf("pvc storage class = %q, want the default class %q", got, "standard")
	}
	dir, err := c.VolumeDir(ctx, ns, "data-node-0")
	if err != nil {
		t.Fatal(err)
	}
	if !isUnder(dir, c.VolumesDir) {
		t.Errorf("volume dir %s is not under %s", dir, c.VolumesDir)
	}
	if err := os.WriteFile(filepath.Join(dir, "probe"), []byte("x"), 0o644); err != nil {
		t.Errorf("volume dir not writable: %v", err)
	}

	// A Job pod carries JobPodLabel: kwok must schedule-and-leave it, neither
	// Running nor Succeeded, for a runner to execute.
	job := newJob(ns, "left-alone")
	if _, err := client.BatchV1().Jobs(ns).Create(ctx, job, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	var jobPod *corev1.Pod
	waitFor(t, "job pod scheduled", func(ctx context.Context) (bool, error) {
		pods, err := client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: JobPodLabel + "=left-alone"})
		if err != nil || len(pods.Items) == 0 {
			return false, err
		}
		jobPod = &pods.Items[0]
		return jobPod.Spec.NodeName != "", nil
	})
	time.Sleep(3 * time.Second) // kwok acts within milliseconds on pods it manages
	jobPod, err = client.CoreV1().Pods(ns).Get(ctx, jobPod.Name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if jobPod.Status.Phase != corev1.PodPending || len(jobPod.Status.ContainerStatuses) > 0 {
		t.Errorf("kwok touched the job pod: phase %s, container statuses %v", jobPod.Status.Phase, jobPod.Status.ContainerStatuses)
	}
	// As a runner would once the job pod is deleted: kwok does not finish it.
	if err := client.CoreV1().Pods(ns).Delete(ctx, jobPod.Name, metav1.DeleteOptions{GracePeriodSeconds: ptr.To[int64](0)}); err != nil {
		t.Fatal(err)
	}

	// A pod bound to a LeavePodsOnNodes node is left alone too, while the node
	// itself is kwok-managed and Ready.
	onRunner := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "on-runner-node"},
		Spec: corev1.PodSpec{
			NodeName:   "runner-0",
			Containers: []corev1.Container{{Name: "c", Image: "citacloud/cita-node-job:latest"}},
		},
	}
	if _, err := client.CoreV1().Pods(ns).Create(ctx, onRunner, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2 * time.Second)
	if onRunner, err = client.CoreV1().Pods(ns).Get(ctx, onRunner.Name, metav1.GetOptions{}); err != nil {
		t.Fatal(err)
	}
	if onRunner.Status.Phase != corev1.PodPending {
		t.Errorf("kwok touched the pod on runner-0: phase %s", onRunner.Status.Phase)
	}

	scale, err := client.AppsV1().StatefulSets(ns).GetScale(ctx, "node", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	scale.Spec.Replicas = 0
	if _, err := client.AppsV1().StatefulSets(ns).UpdateScale(ctx, "node", scale, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "pod node-0 gone", func(ctx context.Context) (bool, error) {
		_, err := client.CoreV1().Pods(ns).Get(ctx, "node-0", metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return true, nil
		}
		return false, err
	})
	// Scaling down keeps the claim and its data.
	if _, err := os.Stat(filepath.Join(dir, "probe")); err != nil {
		t.Errorf("volume data lost after scale down: %v", err)
	}

	// Deleting the claim releases the volume; the provisioner deletes it and
	// its directory (reclaimPolicy Delete).
	pvName := pvc.Spec.VolumeName
	if err := client.CoreV1().PersistentVolumeClaims(ns).Delete(ctx, "data-node-0", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "pv "+pvName+" deleted", func(ctx context.Context) (bool, error) {
		_, err := client.CoreV1().PersistentVolumes().Get(ctx, pvName, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return true, nil
		}
		return false, err
	})
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("volume dir %s still there after its PV was deleted: %v", dir, err)
	}

	if err := c.Stop(); err != nil {
		t.Fatal(err)
	}
	if pids := c.PIDs(); len(pids) > 0 {
		t.Errorf("processes still running after Stop: %v", pids)
	}
	// Every component has the work dir in its arguments.
	out, err := exec.Command("pgrep", "-a", "-f", regexp.QuoteMeta(c.WorkDir)).Output()
	var exitErr *exec.ExitError
	if !(errors.As(err, &exitErr) && exitErr.ExitCode() == 1) {
		t.Errorf("pgrep found processes of the cluster after Stop (err %v):\n%s", err, out)
	}
}

func waitFor(t *testing.T, what string, cond wait.ConditionWithContextFunc) {
	t.Helper()
	if err := wait.PollUntilContextTimeout(t.Context(), 100*time.Millisecond, time.Minute, true, cond); err != nil {
		t.Fatalf("waiting for %s: %v", what, err)
	}
}

func newStatefulSet(namespace, name string, replicas int32) *appsv1.StatefulSet {
	labels := map[string]string{"app": name}
	return &appsv1.StatefulSet{
		ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: name},
		Spec: appsv1.StatefulSetSpec{
			Replicas: ptr.To(replicas),
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: corev1.PodSpec{
					Containers: []corev1.Container{{
						Name:         "node",
						Image:        "citacloud/node:latest",
						VolumeMounts: []corev1.VolumeMount{{Name: "data", MountPath: "/data"}},
					}},
				},
			},
			VolumeClaimTemplates: []corev1.PersistentVolumeClaim{{
				ObjectMeta: metav1.ObjectMeta{Name: "data"},
				Spec: corev1.PersistentVolumeClaimSpec{
					AccessModes: []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
					Resources: corev1.VolumeResourceRequirements{
						Requests: corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("1Gi")},
					},
				},
			}},
		},
	}
}

func newJob(namespace, name string) *batchv1.Job {
	return &batchv1.Job{
		ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: name},
		Spec: batchv1.JobSpec{
			BackoffLimit: ptr.To[int32](0),
			Template: corev1.PodTemplateSpec{
				Spec: corev1.PodSpec{
					RestartPolicy: corev1.RestartPolicyNever,
					Containers:    []corev1.Container{{Name: "job", Image: "citacloud/cita-node-job:latest"}},
				},
			},
		},
	}
}
