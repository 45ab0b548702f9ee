package operations

import (
	"context"
	"fmt"
	"reflect"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/cache"

	citav1 "github.com/cita-cloud/cita-node-operator/pkg/apis/citacloud/v1"
	"github.com/cita-cloud/cita-node-operator/pkg/controller"
)

// crClient is the part of a generated typed client the machine uses.
type crClient[T object] interface {
	UpdateStatus(ctx context.Context, obj T, opts metav1.UpdateOptions) (T, error)
	Patch(ctx context.Context, name string, pt types.PatchType, data []byte, opts metav1.PatchOptions, subresources ...string) (T, error)
}

// newKind wires one CR kind: its named queue, its informer and a typed
// client, with toOperation saying how its CR maps onto the machine.
func newKind[T object](name, jobSuffix string, informer cache.SharedIndexInformer,
	client func(namespace string) crClient[T], toOperation func(T) *operation) *kind {
	k := &kind{
		name:      name,
		jobSuffix: jobSuffix,
		informer:  informer,
		queue:     controller.NewQueue(name),
	}
	_, k.writesNodeRoot = toOperation(reflect.New(reflect.TypeFor[T]().Elem()).Interface().(T)).work.(nodeRootWriter)
	k.view = func(obj any) *operation {
		if t, ok := obj.(cache.DeletedFinalStateUnknown); ok {
			obj = t.Obj
		}
		cr, ok := obj.(T)
		if !ok {
			return nil
		}
		return toOperation(cr)
	}
	k.get = func(key cache.ObjectName) (*operation, error) {
		item, exists, err := informer.GetIndexer().GetByKey(key.String())
		if err != nil {
			return nil, err
		}
		if !exists {
			return nil, apierrors.NewNotFound(citav1.Resource(name), key.Name)
		}
		cr, ok := item.(T)
		if !ok {
			return nil, fmt.Errorf("%s cache holds a %T", name, item)
		}
		op := toOperation(cr.DeepCopyObject().(T))
		op.kind = k
		return op, nil
	}
	k.updateStatus = func(ctx context.Context, op *operation) (string, error) {
		out, err := client(op.obj.GetNamespace()).UpdateStatus(ctx, op.obj.(T), metav1.UpdateOptions{})
		if err != nil {
			return "", err
		}
		return out.GetResourceVersion(), nil
	}
	k.patch = func(ctx context.Context, namespace, name string, data []byte) (string, error) {
		out, err := client(namespace).Patch(ctx, name, types.MergePatchType, data, metav1.PatchOptions{})
		if err != nil {
			return "", err
		}
		return out.GetResourceVersion(), nil
	}
	return k
}
