package localcluster

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/workqueue"
	"k8s.io/klog/v2"
	"k8s.io/utils/ptr"
)

const (
	// ProvisionerName is the provisioner of the cluster's StorageClass.
	ProvisionerName = "localcluster.cita.cloud/hostpath"
	// ClaimAnnotation on a provisioned PV names the claim it was made for
	// ("namespace/name"), to find a volume's directory from either side.
	ClaimAnnotation = "localcluster.cita.cloud/claim"

	provisionedByAnnotation = "pv.kubernetes.io/provisioned-by"
)

// hostPathProvisioner stands in for a CSI driver: for every PVC of a
// StorageClass whose provisioner is ProvisionerName it makes a directory under root and a hostPath PV pointing at it,
// with a claimRef so that kube-controller-manager's PV controller binds the two.
// Released PVs with reclaimPolicy Delete are deleted along with their directory.
// A runner executing pods bind-mounts PV.spec.hostPath.path, the real directory.
type hostPathProvisioner struct {
	client       kubernetes.Interface
	storageClass string
	root         string
	pvcLister    corelisters.PersistentVolumeClaimLister
	pvLister     corelisters.PersistentVolumeLister
	queue        workqueue.TypedRateLimitingInterface[string]
	synced       []cache.InformerSynced
}

func newHostPathProvisioner(client kubernetes.Interface, factory informers.SharedInformerFactory, storageClass, root string) (*hostPathProvisioner, error) {
	p := &hostPathProvisioner{
		client:       client,
		storageClass: storageClass,
		root:         root,
		queue: workqueue.NewTypedRateLimitingQueueWithConfig(
			workqueue.NewTypedItemExponentialFailureRateLimiter[string](50*time.Millisecond, 5*time.Second),
			workqueue.TypedRateLimitingQueueConfig[string]{Name: "localcluster-provisioner"}),
	}
	pvcInformer := factory.Core().V1().PersistentVolumeClaims()
	pvInformer := factory.Core().V1().PersistentVolumes()
	p.pvcLister = pvcInformer.Lister()
	p.pvLister = pvInformer.Lister()
	p.synced = []cache.InformerSynced{pvcInformer.Informer().HasSynced, pvInformer.Informer().HasSynced}

	enqueue := func(prefix string) func(obj any) {
		return func(obj any) {
			key, err := cache.DeletionHandlingMetaNamespaceKeyFunc(obj)
			if err != nil {
				utilruntime.HandleError(err)
				return
			}
			p.queue.Add(prefix + key)
		}
	}
	for informer, prefix := range map[cache.SharedIndexInformer]string{
		pvcInformer.Informer(): "pvc/",
		pvInformer.Informer():  "pv/",
	} {
		add := enqueue(prefix)
		if _, err := informer.AddEventHandler(cache.ResourceEventHandlerFuncs{
			AddFunc:    add,
			UpdateFunc: func(_, obj any) { add(obj) },
		}); err != nil {
			return nil, err
		}
	}
	return p, nil
}

func (p *hostPathProvisioner) run(ctx context.Context) {
	defer p.queue.ShutDown()
	if !cache.WaitForCacheSync(ctx.Done(), p.synced...) {
		return
	}
	go wait.UntilWithContext(ctx, func(ctx context.Context) {
		for p.processNext(ctx) {
		}
	}, time.Second)
	<-ctx.Done()
}

func (p *hostPathProvisioner) processNext(ctx context.Context) bool {
	key, shutdown := p.queue.Get()
	if shutdown {
		return false
	}
	defer p.queue.Done(key)
	var err error
	if k, ok := strings.CutPrefix(key, "pvc/"); ok {
		err = p.syncClaim(ctx, k)
	} else {
		err = p.syncVolume(ctx, strings.TrimPrefix(key, "pv/"))
	}
	if err != nil {
		klog.FromContext(ctx).Error(err, "Provisioner sync failed, retrying", "key", key)
		p.queue.AddRateLimited(key)
		return true
	}
	p.queue.Forget(key)
	return true
}

func (p *hostPathProvisioner) syncClaim(ctx context.Context, key string) error {
	namespace, name, err := cache.SplitMetaNamespaceKey(key)
	if err != nil {
		return err
	}
	pvc, err := p.pvcLister.PersistentVolumeClaims(namespace).Get(name)
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return err
	}
	if pvc.DeletionTimestamp != nil || pvc.Spec.VolumeName != "" {
		return nil
	}
	// Any StorageClass naming this provisioner is served, so tests can add
	// classes with the names real manifests use (nas-client-provisioner).
	scName := ptr.Deref(pvc.Spec.StorageClassName, "")
	if scName != p.storageClass {
		sc, err := p.client.StorageV1().StorageClasses().Get(ctx, scName, metav1.GetOptions{})
		if apierrors.IsNotFound(err) || (err == nil && sc.Provisioner != ProvisionerName) || scName == "" {
			return nil
		}
		if err != nil {
			return err
		}
	}
	pvName := "pvc-" + string(pvc.UID)
	if _, err := p.pvLister.Get(pvName); err == nil {
		return nil
	}

	dir := filepath.Join(p.root, pvc.Namespace, pvc.Name+"-"+string(pvc.UID))
	// World-writable: the runner may execute containers as any user.
	if err := os.MkdirAll(dir, 0o777); err != nil {
		return err
	}
	if err := os.Chmod(dir, 0o777); err != nil {
		return err
	}
	size, ok := pvc.Spec.Resources.Requests[corev1.ResourceStorage]
	if !ok {
		size = resource.MustParse("1Gi")
	}
	accessModes := pvc.Spec.AccessModes
	if len(accessModes) == 0 {
		accessModes = []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce}
	}
	pv := &corev1.PersistentVolume{
		ObjectMeta: metav1.ObjectMeta{
			Name: pvName,
			Annotations: map[string]string{
				provisionedByAnnotation: ProvisionerName,
				ClaimAnnotation:         pvc.Namespace + "/" + pvc.Name,
			},
		},
		Spec: corev1.PersistentVolumeSpec{
			Capacity:                      corev1.ResourceList{corev1.ResourceStorage: size},
			AccessModes:                   accessModes,
			PersistentVolumeReclaimPolicy: corev1.PersistentVolumeReclaimDelete,
			StorageClassName:              scName,
			VolumeMode:                    pvc.Spec.VolumeMode,
			ClaimRef: &corev1.ObjectReference{
				APIVersion: "v1",
				Kind:       "PersistentVolumeClaim",
				Namespace:  pvc.Namespace,
				Name:       pvc.Name,
				UID:        pvc.UID,
			},
			PersistentVolumeSource: corev1.PersistentVolumeSource{
				HostPath: &corev1.HostPathVolumeSource{
					Path: dir,
					Type: ptr.To(corev1.HostPathDirectory),
				},
			},
		},
	}
	_, err = p.client.CoreV1().PersistentVolumes().Create(ctx, pv, metav1.CreateOptions{})
	if apierrors.IsAlreadyExists(err) {
		return nil
	}
	if err != nil {
		return err
	}
	klog.FromContext(ctx).V(2).Info("Provisioned volume", "pvc", klog.KObj(pvc), "pv", pvName, "dir", dir)
	return nil
}

func (p *hostPathProvisioner) syncVolume(ctx context.Context, name string) error {
	pv, err := p.pvLister.Get(name)
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return err
	}
	if pv.Annotations[provisionedByAnnotation] != ProvisionerName || pv.DeletionTimestamp != nil ||
		pv.Status.Phase != corev1.VolumeReleased ||
		pv.Spec.PersistentVolumeReclaimPolicy != corev1.PersistentVolumeReclaimDelete {
		return nil
	}
	if pv.Spec.HostPath != nil && isUnder(pv.Spec.HostPath.Path, p.root) {
		if err := os.RemoveAll(pv.Spec.HostPath.Path); err != nil {
			return err
		}
	}
	err = p.client.CoreV1().PersistentVolumes().Delete(ctx, pv.Name, metav1.DeleteOptions{
		Preconditions: &metav1.Preconditions{UID: &pv.UID},
	})
	if apierrors.IsNotFound(err) || apierrors.IsConflict(err) {
		return nil
	}
	return err
}

func isUnder(path, root string) bool {
	rel, err := filepath.Rel(root, path)
	return err == nil && rel != "." && !strings.HasPrefix(rel, "..")
}

func newStorageClass(name string) *storagev1.StorageClass {
	return &storagev1.StorageClass{
		ObjectMeta: metav1.ObjectMeta{
			Name: name,
			Annotations: map[string]string{
				"storageclass.kubernetes.io/is-default-class": "true",
			},
		},
		Provisioner:       ProvisionerName,
		ReclaimPolicy:     ptr.To(corev1.PersistentVolumeReclaimDelete),
		VolumeBindingMode: ptr.To(storagev1.VolumeBindingImmediate),
	}
}

// VolumeDir returns the host directory backing a bound PVC: the path a runner
// bind-mounts where the pod mounts the claim. It fails while the claim is not
// Bound or is bound to a volume that is not a hostPath.
func (c *Cluster) VolumeDir(ctx context.Context, namespace, pvcName string) (string, error) {
	client, err := kubernetes.NewForConfig(c.RESTConfig())
	if err != nil {
		return "", err
	}
	return VolumeDir(ctx, client, namespace, pvcName)
}

// VolumeDir is Cluster.VolumeDir for a caller that has only a client.
func VolumeDir(ctx context.Context, client kubernetes.Interface, namespace, pvcName string) (string, error) {
	pvc, err := client.CoreV1().PersistentVolumeClaims(namespace).Get(ctx, pvcName, metav1.GetOptions{})
	if err != nil {
		return "", err
	}
	if pvc.Status.Phase != corev1.ClaimBound || pvc.Spec.VolumeName == "" {
		return "", fmt.Errorf("pvc %s/%s is %s, not Bound", namespace, pvcName, pvc.Status.Phase)
	}
	pv, err := client.CoreV1().PersistentVolumes().Get(ctx, pvc.Spec.VolumeName, metav1.GetOptions{})
	if err != nil {
		return "", err
	}
	if pv.Spec.HostPath == nil {
		return "", fmt.Errorf("pv %s of pvc %s/%s is not a hostPath volume", pv.Name, namespace, pvcName)
	}
	return pv.Spec.HostPath.Path, nil
}
