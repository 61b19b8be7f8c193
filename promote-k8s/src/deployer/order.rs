//! The order objects are applied in: Namespaces and CRDs first (the rest may live in them or be of their
//! kinds), then the install order Helm and kubectl users expect (what others depend on before what uses it).
//! Deletes go in reverse ([`rank`] sorts both ways).

use super::objects::GroupKind;

/// Kinds in install order, after Namespaces and CRDs. Kinds not listed go last, in bundle order.
const INSTALL_ORDER: &[&str] = &[
    "PriorityClass",
    "NetworkPolicy",
    "ResourceQuota",
    "LimitRange",
    "PodSecurityPolicy",
    "PodDisruptionBudget",
    "ServiceAccount",
    "Secret",
    "SecretList",
    "ConfigMap",
    "StorageClass",
    "PersistentVolume",
    "PersistentVolumeClaim",
    "ClusterRole",
    "ClusterRoleList",
    "ClusterRoleBinding",
    "ClusterRoleBindingList",
    "Role",
    "RoleList",
    "RoleBinding",
    "RoleBindingList",
    "Service",
    "DaemonSet",
    "Pod",
    "ReplicationController",
    "ReplicaSet",
    "Deployment",
    "HorizontalPodAutoscaler",
    "StatefulSet",
    "Job",
    "CronJob",
    "IngressClass",
    "Ingress",
    "APIService",
    "MutatingWebhookConfiguration",
    "ValidatingWebhookConfiguration",
];

/// Whether objects of this kind are applied, and waited for, before everything else.
pub(crate) fn goes_first(group_kind: &GroupKind) -> bool {
    group_kind.is_namespace() || group_kind.is_crd()
}

/// The rank of a kind in install order (lower first).
pub(crate) fn rank(group_kind: &GroupKind) -> usize {
    if group_kind.is_namespace() {
        return 0;
    }
    if group_kind.is_crd() {
        return 1;
    }
    INSTALL_ORDER.iter().position(|kind| *kind == group_kind.kind).map_or(INSTALL_ORDER.len() + 2, |i| i + 2)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn namespaces_and_crds_first_workloads_after_their_config_and_unknown_kinds_last() {
        let mut kinds = [
            GroupKind::new("example.com", "Widget"),
            GroupKind::new("apps", "Deployment"),
            GroupKind::new("", "ConfigMap"),
            GroupKind::new("apiextensions.k8s.io", "CustomResourceDefinition"),
            GroupKind::new("", "Service"),
            GroupKind::new("", "Namespace"),
        ];
        kinds.sort_by_key(rank);
        let names: Vec<&str> = kinds.iter().map(|k| k.kind.as_str()).collect();
        assert_eq!(names, ["Namespace", "CustomResourceDefinition", "ConfigMap", "Service", "Deployment", "Widget"]);
        kinds.sort_by_key(|k| std::cmp::Reverse(rank(k)));
        assert_eq!(kinds.first().unwrap().kind, "Widget");
        assert_eq!(kinds.last().unwrap().kind, "Namespace");
    }
}
