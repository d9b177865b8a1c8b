package main

import (
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apivalidation "k8s.io/apimachinery/pkg/api/validation"
	metav1validation "k8s.io/apimachinery/pkg/apis/meta/v1/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// objectMetaErrors is what the API server's metadata validation (apimachinery's own) refuses in an object
// KServe's reconciler creates: the fake client stores anything, an API server refuses a name or label
// value that is too long, and then KServe's create fails. Pod templates' labels and annotations are
// checked too, as the Deployment validation does.
func objectMetaErrors(obj client.Object) []string {
	nameFn := apivalidation.NameIsDNSSubdomain
	if _, ok := obj.(*corev1.Service); ok {
		nameFn = apivalidation.NameIsDNS1035Label
	}
	errs := apivalidation.ValidateObjectMetaAccessor(obj, true, nameFn, field.NewPath("metadata"))
	if deployment, ok := obj.(*appsv1.Deployment); ok {
		template := field.NewPath("spec", "template", "metadata")
		errs = append(errs, metav1validation.ValidateLabels(deployment.Spec.Template.Labels, template.Child("labels"))...)
		errs = append(errs, apivalidation.ValidateAnnotations(deployment.Spec.Template.Annotations, template.Child("annotations"))...)
		if deployment.Spec.Selector != nil {
			errs = append(errs, metav1validation.ValidateLabels(deployment.Spec.Selector.MatchLabels,
				field.NewPath("spec", "selector", "matchLabels"))...)
		}
	}
	var messages []string
	for _, e := range errs {
		messages = append(messages, e.Error())
	}
	return messages
}
