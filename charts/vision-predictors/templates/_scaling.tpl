{{/* HPA behavior of the chart's HPAs and ScaledObjects: model loads are expensive, so scale down one
     pod a minute after a stabilization window, up by two. Args: root. */}}
{{- define "vision-predictors.hpaBehavior" -}}
scaleDown:
  stabilizationWindowSeconds: {{ .Values.autoscaling.scaleDownStabilizationSeconds }}
  policies:
    - type: Pods
      value: 1
      periodSeconds: 60
scaleUp:
  stabilizationWindowSeconds: 0
  policies:
    - type: Pods
      value: 2
      periodSeconds: 60
{{- end }}
