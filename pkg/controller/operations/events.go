package operations

import (
	"fmt"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	citav1 "github.com/cita-cloud/cita-node-operator/pkg/apis/citacloud/v1"
)

const (
	eventNormal  = "Normal"
	eventWarning = "Warning"
)

// event records an Event on the operation, readable in kubectl describe.
func (c *Controller) event(op *operation, eventType, reason, format string, args ...any) {
	c.deps.Recorder.Eventf(op.obj, eventType, reason, format, args...)
}

// setCondition sets a condition; its transition time moves only when its
// status does.
func (c *Controller) setCondition(op *operation, condType string, status metav1.ConditionStatus, reason, format string, args ...any) {
	meta.SetStatusCondition(&op.status.Conditions, metav1.Condition{
		Type:               condType,
		Status:             status,
		Reason:             reason,
		Message:            fmt.Sprintf(format, args...),
		ObservedGeneration: op.obj.GetGeneration(),
		LastTransitionTime: metav1.NewTime(c.deps.Clock.Now()),
	})
}

// setStep moves the operation to a step with a message. The Event for the
// transition is emitted once the status is written.
func (op *operation) setStep(step citav1.Step, format string, args ...any) {
	op.status.Step = step
	op.status.Message = fmt.Sprintf(format, args...)
}
