#!/usr/bin/env bash
# Creates the security group cluster/aws.yaml expects (put its id in SecurityGroupIds there).
# Inbound: SSH from your own address range only (how `ray up`, `ray dashboard` and the MLflow
# tunnel reach the head), and all traffic between members of the group (Ray's own ports).
# Nothing else: the Ray dashboard and MLflow listen on the head's localhost anyway.
#
# Usage: cluster/vm/aws-security-group.sh VPC_ID ADMIN_CIDR [REGION]    e.g. vpc-0abc 203.0.113.7/32
# (Ray's own default group would open SSH to 0.0.0.0/0, which is why the config names this one.)
set -euo pipefail
vpc="${1:?usage: aws-security-group.sh VPC_ID ADMIN_CIDR [REGION]}"
cidr="${2:?usage: aws-security-group.sh VPC_ID ADMIN_CIDR [REGION]}"
region="${3:-us-west-2}"
case "$cidr" in
  0.0.0.0/0|::/0) echo "refusing $cidr: give the address range you administer the cluster from" >&2; exit 2;;
esac
sg="$(aws ec2 create-security-group --region "$region" --vpc-id "$vpc" --group-name maskvae-ray \
  --description "maskvae Ray cluster: SSH from admin range, all traffic within the group" \
  --query GroupId --output text)"
aws ec2 authorize-security-group-ingress --region "$region" --group-id "$sg" \
  --ip-permissions "IpProtocol=tcp,FromPort=22,ToPort=22,IpRanges=[{CidrIp=$cidr,Description=admin-ssh}]" \
                   "IpProtocol=-1,UserIdGroupPairs=[{GroupId=$sg,Description=ray-intra-cluster}]" >/dev/null
echo "$sg"
