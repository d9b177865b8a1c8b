package main

import (
	"context"
	"encoding/json"
	"fmt"

	jsonpatch "github.com/evanphx/json-patch/v5"
	admissionv1 "k8s.io/api/admission/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
	k8sfake "k8s.io/client-go/kubernetes/fake"
	psapi "k8s.io/pod-security-admission/api"
	"k8s.io/pod-security-admission/policy"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	podmutator "github.com/kserve/kserve/pkg/webhook/admission/pod"
)

// PodReport is one pod as the kubelet would get it: after KServe's pod mutator (for KServe's pods), with
// Pod Security admission's verdict at the namespace's level.
type PodReport struct {
	// Owner is Kind/name of the workload whose template this pod is made from.
	Owner         string          `json:"owner"`
	Track         string          `json:"track"`
	Pod           json.RawMessage `json:"pod"`
	MutationError string          `json:"mutationError"`
	PodSecurity   PodSecurity     `json:"podSecurity"`
}

type PodSecurity struct {
	Level     string      `json:"level"`
	Allowed   bool        `json:"allowed"`
	Forbidden []Violation `json:"forbidden"`
}

type Violation struct {
	Reason string `json:"reason"`
	Detail string `json:"detail"`
}

// podOfWorkload is the pod a Deployment's controller creates from its template (or a rendered Pod), before
// admission. Knative Services go through Knative's own revision code instead (knativeRevisionPod).
func podOfWorkload(obj runtime.Object) (*corev1.Pod, string, bool) {
	switch typed := obj.(type) {
	case *appsv1.Deployment:
		template := typed.Spec.Template
		pod := &corev1.Pod{ObjectMeta: *template.ObjectMeta.DeepCopy(), Spec: *template.Spec.DeepCopy()}
		pod.Namespace = typed.Namespace
		pod.GenerateName = typed.Name + "-"
		return pod, "Deployment/" + typed.Name, true
	case *corev1.Pod:
		return typed.DeepCopy(), "Pod/" + typed.Name, true
	}
	return nil, "", false
}

// podReport sends the pod through KServe's pod mutator (when `kservePod`) as the API server would, then
// evaluates the result against Pod Security at the namespace's level.
func (c *cluster) podReport(ctx context.Context, owner, track string, pod *corev1.Pod, kservePod bool) PodReport {
	report := PodReport{Owner: owner, Track: track}
	if kservePod {
		mutated, err := c.mutate(ctx, pod)
		if err != nil {
			report.MutationError = err.Error()
		} else {
			pod = mutated
		}
	}
	report.Pod = mustJSON(c.scheme, pod)
	report.PodSecurity = c.evaluate(pod)
	return report
}

func (c *cluster) mutate(ctx context.Context, pod *corev1.Pod) (*corev1.Pod, error) {
	objects := append([]client.Object{}, c.clusterObjects...)
	fakeClient := fake.NewClientBuilder().WithScheme(c.scheme).WithObjects(objects...).Build()
	clientset := k8sfake.NewClientset(append([]runtime.Object{c.configMap.DeepCopy()}, c.serviceAccounts...)...)
	mutator := &podmutator.Mutator{Client: fakeClient, Clientset: clientset, Decoder: admission.NewDecoder(c.scheme)}
	raw, err := json.Marshal(pod)
	if err != nil {
		return nil, err
	}
	response := mutator.Handle(ctx, admission.Request{AdmissionRequest: admissionv1.AdmissionRequest{
		UID: "harness", Operation: admissionv1.Create, Namespace: pod.Namespace,
		Kind:   metaGVK("", "v1", "Pod"),
		Object: runtime.RawExtension{Raw: raw},
	}})
	if !response.Allowed {
		return nil, fmt.Errorf("pod mutator refused the pod: %s", response.Result.Message)
	}
	if len(response.Patches) == 0 {
		return pod, nil
	}
	patchJSON, err := json.Marshal(response.Patches)
	if err != nil {
		return nil, err
	}
	patch, err := jsonpatch.DecodePatch(patchJSON)
	if err != nil {
		return nil, err
	}
	patched, err := patch.Apply(raw)
	if err != nil {
		return nil, err
	}
	mutated := &corev1.Pod{}
	return mutated, json.Unmarshal(patched, mutated)
}

func (c *cluster) evaluate(pod *corev1.Pod) PodSecurity {
	level, err := psapi.ParseLevel(c.podSecurity)
	if err != nil {
		return PodSecurity{Level: c.podSecurity, Forbidden: []Violation{{"unknown level", err.Error()}}}
	}
	evaluator, err := policy.NewEvaluator(policy.DefaultChecks())
	if err != nil {
		return PodSecurity{Level: c.podSecurity, Forbidden: []Violation{{"evaluator", err.Error()}}}
	}
	results := evaluator.EvaluatePod(psapi.LevelVersion{Level: level, Version: psapi.LatestVersion()},
		&pod.ObjectMeta, &pod.Spec)
	verdict := PodSecurity{Level: string(level), Allowed: true, Forbidden: []Violation{}}
	for _, result := range results {
		if !result.Allowed {
			verdict.Allowed = false
			verdict.Forbidden = append(verdict.Forbidden, Violation{result.ForbiddenReason, result.ForbiddenDetail})
		}
	}
	return verdict
}
