package main

import (
	"context"
	"fmt"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"knative.dev/pkg/apis"
	duckv1 "knative.dev/pkg/apis/duck/v1"
	knservingv1 "knative.dev/serving/pkg/apis/serving/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	gwapiv1 "sigs.k8s.io/gateway-api/apis/v1"
)

// rollOut writes the status the other controllers of a cluster would write once everything KServe created
// is running: every Deployment available with all its replicas (the Deployment controller), every
// HTTPRoute accepted by its Gateway (the Gateway API implementation), every Knative Service ready with its
// latest revision serving (Knative Serving). KServe's reconciler reads these before it routes traffic.
func rollOut(ctx context.Context, c client.Client, namespace string) error {
	deployments := &appsv1.DeploymentList{}
	if err := c.List(ctx, deployments, client.InNamespace(namespace)); err != nil {
		return err
	}
	for i := range deployments.Items {
		d := &deployments.Items[i]
		replicas := int32(1)
		if d.Spec.Replicas != nil {
			replicas = *d.Spec.Replicas
		}
		d.Status = appsv1.DeploymentStatus{
			ObservedGeneration: d.Generation, Replicas: replicas, UpdatedReplicas: replicas,
			ReadyReplicas: replicas, AvailableReplicas: replicas,
			Conditions: []appsv1.DeploymentCondition{
				{Type: appsv1.DeploymentAvailable, Status: corev1.ConditionTrue, Reason: "MinimumReplicasAvailable"},
				{Type: appsv1.DeploymentProgressing, Status: corev1.ConditionTrue, Reason: "NewReplicaSetAvailable"},
			},
		}
		if err := c.Status().Update(ctx, d); err != nil {
			return fmt.Errorf("rolling out Deployment %s: %w", d.Name, err)
		}
	}
	routes := &gwapiv1.HTTPRouteList{}
	if err := c.List(ctx, routes, client.InNamespace(namespace)); err != nil {
		return err
	}
	for i := range routes.Items {
		route := &routes.Items[i]
		route.Status.Parents = nil
		for _, parent := range route.Spec.ParentRefs {
			route.Status.Parents = append(route.Status.Parents, gwapiv1.RouteParentStatus{
				ParentRef: parent, ControllerName: "example.com/gateway-controller",
				Conditions: []metav1.Condition{
					{Type: string(gwapiv1.RouteConditionAccepted), Status: metav1.ConditionTrue, Reason: "Accepted",
						LastTransitionTime: metav1.Now()},
					{Type: string(gwapiv1.RouteConditionResolvedRefs), Status: metav1.ConditionTrue,
						Reason: "ResolvedRefs", LastTransitionTime: metav1.Now()},
				},
			})
		}
		if err := c.Status().Update(ctx, route); err != nil {
			return fmt.Errorf("accepting HTTPRoute %s: %w", route.Name, err)
		}
	}
	services := &knservingv1.ServiceList{}
	if err := c.List(ctx, services, client.InNamespace(namespace)); err != nil {
		return err
	}
	for i := range services.Items {
		if err := c.Status().Update(ctx, knativeServiceReady(&services.Items[i])); err != nil {
			return fmt.Errorf("readying Knative Service %s: %w", services.Items[i].Name, err)
		}
	}
	return nil
}

// knativeServiceReady is a Knative Service whose newest template is a ready revision serving the traffic
// its spec asks for (Knative names revisions <service>-<generation, 5 digits>).
func knativeServiceReady(ksvc *knservingv1.Service) *knservingv1.Service {
	latest := fmt.Sprintf("%s-%05d", ksvc.Name, ksvc.Generation)
	if ksvc.Spec.Template.Name != "" {
		latest = ksvc.Spec.Template.Name
	}
	ksvc.Status.ObservedGeneration = ksvc.Generation
	ksvc.Status.LatestCreatedRevisionName = latest
	ksvc.Status.LatestReadyRevisionName = latest
	ksvc.Status.URL = apis.HTTP(ksvc.Name + "." + ksvc.Namespace + ".example.com")
	ksvc.Status.Address = &duckv1.Addressable{URL: apis.HTTP(ksvc.Name + "." + ksvc.Namespace + ".svc.cluster.local")}
	ksvc.Status.Traffic = nil
	for _, target := range ksvc.Spec.Traffic {
		status := *target.DeepCopy()
		if status.LatestRevision != nil && *status.LatestRevision {
			status.RevisionName = latest
		}
		ksvc.Status.Traffic = append(ksvc.Status.Traffic, status)
	}
	if len(ksvc.Status.Traffic) == 0 {
		yes := true
		percent := int64(100)
		ksvc.Status.Traffic = []knservingv1.TrafficTarget{{RevisionName: latest, LatestRevision: &yes, Percent: &percent}}
	}
	ksvc.Status.Conditions = duckv1.Conditions{
		{Type: apis.ConditionReady, Status: corev1.ConditionTrue},
		{Type: knservingv1.ServiceConditionConfigurationsReady, Status: corev1.ConditionTrue},
		{Type: knservingv1.ServiceConditionRoutesReady, Status: corev1.ConditionTrue},
	}
	return ksvc
}
