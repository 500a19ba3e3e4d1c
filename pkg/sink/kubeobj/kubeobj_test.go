package kubeobj

import (
	"errors"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/pdsafelist/pdsafelist/pkg/plan"
)

func object(annotations map[string]string, list int) *unstructured.Unstructured {
	obj := &unstructured.Unstructured{Object: map[string]any{}}
	obj.SetAPIVersion("cilium.io/v2")
	obj.SetKind("CiliumCIDRGroup")
	obj.SetName("pagerduty")
	obj.SetAnnotations(annotations)
	items := make([]any, list)
	for i := range items {
		items[i] = "192.0.2.1/32"
	}
	_ = unstructured.SetNestedSlice(obj.Object, items, "spec", "externalCIDRs")
	return obj
}

// The annotations count keys and values, ours and the others the object
// keeps, against the limit; the object counts its JSON.
func TestCheckSize(t *testing.T) {
	ann := map[string]string{OwnerAnnot: "o", SetsAnnot: strings.Repeat("x", 100)}
	ours := len(OwnerAnnot) + 1 + len(SetsAnnot) + 100
	small := object(ann, 1)
	for _, tc := range []struct {
		name           string
		obj            *unstructured.Unstructured
		others         int
		maxObj, maxAnn int
		refused        string
	}{
		{name: "fits", obj: small, maxObj: 1000, maxAnn: ours},
		{name: "annotations one byte over", obj: small, maxObj: 1000, maxAnn: ours - 1, refused: "annotations"},
		{name: "others' annotations count", obj: small, others: 1, maxObj: 1000, maxAnn: ours, refused: "annotations"},
		{name: "object over", obj: object(ann, 100), maxObj: 1000, maxAnn: ours, refused: "-byte object"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := checkSize("cilium-cidrgroup:pagerduty", tc.obj, 7, Read{Others: tc.others}, tc.maxObj, tc.maxAnn)
			if tc.refused == "" {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			var ge *plan.GuardError
			if !errors.As(err, &ge) || ge.Guard != plan.GuardKubeObjectSize || !strings.Contains(err.Error(), tc.refused) ||
				!strings.Contains(err.Error(), "cilium-cidrgroup:pagerduty") || !strings.Contains(err.Error(), "7 entries") {
				t.Errorf("got %v, want a k8s-object-size refusal naming the sink, the count and %q", err, tc.refused)
			}
		})
	}
}

// ReadOf counts the annotations we do not write, and asks for an upgrade
// only while our Update manager holds fields.
func TestReadOf(t *testing.T) {
	obj := object(map[string]string{OwnerAnnot: "o", SetsAnnot: "{}", "note": "abc"}, 0)
	obj.SetResourceVersion("42")
	fields := metav1.FieldsV1{Raw: []byte(`{"f:spec":{"f:externalCIDRs":{}}}`)}
	obj.SetManagedFields([]metav1.ManagedFieldsEntry{{Manager: FieldManager, Operation: metav1.ManagedFieldsOperationApply, APIVersion: "cilium.io/v2", FieldsType: "FieldsV1", FieldsV1: &fields}})
	r, err := ReadOf(obj)
	if err != nil {
		t.Fatal(err)
	}
	if r.ResourceVersion != "42" || r.Others != len("note")+len("abc") || r.Upgrade != nil {
		t.Errorf("read %+v", r)
	}
	obj.SetManagedFields([]metav1.ManagedFieldsEntry{{Manager: FieldManager, Operation: metav1.ManagedFieldsOperationUpdate, APIVersion: "cilium.io/v2", FieldsType: "FieldsV1", FieldsV1: &fields}})
	if r, err = ReadOf(obj); err != nil || r.Upgrade == nil || !strings.Contains(string(r.Upgrade), `"42"`) {
		t.Errorf("read with our Update manager: %+v %v; want an upgrade guarded by resourceVersion 42", r, err)
	}
}
