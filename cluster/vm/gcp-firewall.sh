#!/usr/bin/env bash
# Creates the network cluster/gcp.yaml expects: a dedicated VPC (the `default` network ships a
# rule opening SSH to 0.0.0.0/0), one subnet, and two firewall rules for instances tagged
# maskvae-ray: SSH from your own address range only, and all traffic among the cluster's nodes.
# A Cloud NAT gives nodes outbound access (pip, object store) without public addresses on workers.
#
# Usage: cluster/vm/gcp-firewall.sh PROJECT_ID ADMIN_CIDR [REGION]    e.g. my-project 203.0.113.7/32
set -euo pipefail
project="${1:?usage: gcp-firewall.sh PROJECT_ID ADMIN_CIDR [REGION]}"
cidr="${2:?usage: gcp-firewall.sh PROJECT_ID ADMIN_CIDR [REGION]}"
region="${3:-us-central1}"
case "$cidr" in
  0.0.0.0/0|::/0) echo "refusing $cidr: give the address range you administer the cluster from" >&2; exit 2;;
esac
gcloud compute networks create maskvae-ray --project "$project" --subnet-mode custom
gcloud compute networks subnets create maskvae-ray --project "$project" --network maskvae-ray \
  --region "$region" --range 10.42.0.0/20 --enable-private-ip-google-access
gcloud compute firewall-rules create maskvae-ray-admin-ssh --project "$project" --network maskvae-ray \
  --direction INGRESS --allow tcp:22 --source-ranges "$cidr" --target-tags maskvae-ray
gcloud compute firewall-rules create maskvae-ray-internal --project "$project" --network maskvae-ray \
  --direction INGRESS --allow tcp,udp,icmp --source-tags maskvae-ray --target-tags maskvae-ray
gcloud compute routers create maskvae-ray --project "$project" --network maskvae-ray --region "$region"
gcloud compute routers nats create maskvae-ray --project "$project" --router maskvae-ray --region "$region" \
  --auto-allocate-nat-external-ips --nat-all-subnet-ip-ranges
echo "subnetwork: projects/$project/regions/$region/subnetworks/maskvae-ray"
