"""Families from real names: the built-in rule on public AMI names (the family a person would give each),
the family tag winning, and a team's own [families].patterns — validated at load, applied everywhere."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from bot.core.config import parse_policy
from bot.core.errors import ConfigError
from bot.core.families import family_of as family_of_new
from bot.services.images import Image, family_of
from bot.services.inventory import Inventory
from bot.services.references import References
from bot.services.staleness import Rules, judge
from tests.support import seed

FAMILIES = [
    # Amazon Linux 2023: the version and its date go, the kernel and the architecture stay
    ("al2023-ami-2023.5.20240730.0-kernel-6.1-x86_64", "al2023-ami-kernel-6.1-x86_64"),
    ("al2023-ami-2023.0.20230315.0-kernel-6.1-x86_64", "al2023-ami-kernel-6.1-x86_64"),
    ("al2023-ami-2023.5.20240730.0-kernel-6.1-arm64", "al2023-ami-kernel-6.1-arm64"),
    ("al2023-ami-minimal-2023.5.20240730.0-kernel-6.1-x86_64", "al2023-ami-minimal-kernel-6.1-x86_64"),
    # Amazon Linux 2 and the first Amazon Linux: the version sits in the middle of the name
    ("amzn2-ami-hvm-2.0.20240719.0-x86_64-gp2", "amzn2-ami-hvm-x86_64-gp2"),
    ("amzn2-ami-hvm-2.0.20240719.0-arm64-gp2", "amzn2-ami-hvm-arm64-gp2"),
    ("amzn2-ami-kernel-5.10-hvm-2.0.20240719.0-x86_64-gp2", "amzn2-ami-kernel-5.10-hvm-x86_64-gp2"),
    ("amzn-ami-hvm-2016.09.0.20161028-x86_64-gp2", "amzn-ami-hvm-x86_64-gp2"),
    ("amzn-ami-hvm-2018.03.0.20231218.0-x86_64-gp2", "amzn-ami-hvm-x86_64-gp2"),
    # Ubuntu: the release (codename and number) is what the image is; the build date goes
    ("ubuntu/images/hvm-ssd-gp3/ubuntu-noble-24.04-amd64-server-20240801",
     "ubuntu/images/hvm-ssd-gp3/ubuntu-noble-24.04-amd64-server"),
    ("ubuntu/images/hvm-ssd-gp3/ubuntu-noble-24.04-arm64-server-20240801",
     "ubuntu/images/hvm-ssd-gp3/ubuntu-noble-24.04-arm64-server"),
    ("ubuntu/images/hvm-ssd/ubuntu-jammy-22.04-amd64-server-20240701.1",
     "ubuntu/images/hvm-ssd/ubuntu-jammy-22.04-amd64-server"),
    ("ubuntu/images/hvm-ssd/ubuntu-focal-20.04-amd64-server-20240710",
     "ubuntu/images/hvm-ssd/ubuntu-focal-20.04-amd64-server"),
    # Debian: the date and the build time after it go
    ("debian-12-amd64-20240717-1811", "debian-12-amd64"),
    ("debian-12-arm64-20240717-1811", "debian-12-arm64"),
    ("debian-11-amd64-20240717-1811", "debian-11-amd64"),
    # RHEL: the date and the build counter after it go
    ("RHEL-9.4.0_HVM-20240605-x86_64-82-Hourly2-GP3", "RHEL-9.4.0_HVM-x86_64-Hourly2-GP3"),
    ("RHEL-8.10.0_HVM-20240604-arm64-5-Hourly2-GP3", "RHEL-8.10.0_HVM-arm64-Hourly2-GP3"),
    # SUSE
    ("suse-sles-15-sp6-v20240808-hvm-ssd-x86_64", "suse-sles-15-sp6-hvm-ssd-x86_64"),
    ("suse-sles-15-sp5-v20240129-hvm-ssd-arm64", "suse-sles-15-sp5-hvm-ssd-arm64"),
    # Windows Server: 2022 is the product, 2024.07.10 the build
    ("Windows_Server-2022-English-Full-Base-2024.07.10", "Windows_Server-2022-English-Full-Base"),
    ("Windows_Server-2019-English-Full-SQL_2019_Standard-2024.07.10",
     "Windows_Server-2019-English-Full-SQL_2019_Standard"),
    ("Windows_Server-2016-English-Core-Base-2024.07.10", "Windows_Server-2016-English-Core-Base"),
    # Bottlerocket: the Kubernetes/ECS variant stays; the OS version and its commit go
    ("bottlerocket-aws-k8s-1.30-x86_64-v1.20.5-a3e8bda1", "bottlerocket-aws-k8s-1.30-x86_64"),
    ("bottlerocket-aws-k8s-1.30-nvidia-aarch64-v1.20.5-a3e8bda1", "bottlerocket-aws-k8s-1.30-nvidia-aarch64"),
    ("bottlerocket-aws-ecs-2-x86_64-v1.20.5-a3e8bda1", "bottlerocket-aws-ecs-2-x86_64"),
    # ECS-optimized
    ("amzn2-ami-ecs-hvm-2.0.20240723-x86_64-ebs", "amzn2-ami-ecs-hvm-x86_64-ebs"),
    ("amzn2-ami-ecs-gpu-hvm-2.0.20240723-x86_64-ebs", "amzn2-ami-ecs-gpu-hvm-x86_64-ebs"),
    ("al2023-ami-ecs-hvm-2023.0.20240723-kernel-6.1-x86_64", "al2023-ami-ecs-hvm-kernel-6.1-x86_64"),
    # EKS-optimized: the Kubernetes version stays (1.29 and 1.30 nodes are different families)
    ("amazon-eks-node-1.30-v20240729", "amazon-eks-node-1.30"),
    ("amazon-eks-node-1.29-v20240729", "amazon-eks-node-1.29"),
    ("amazon-eks-arm64-node-1.30-v20240729", "amazon-eks-arm64-node-1.30"),
    ("amazon-eks-gpu-node-1.30-v20240729", "amazon-eks-gpu-node-1.30"),
    ("amazon-eks-node-al2023-x86_64-standard-1.30-v20240729", "amazon-eks-node-al2023-x86_64-standard-1.30"),
    # Deep Learning AMIs: the framework and OS versions stay, the date goes
    ("Deep Learning OSS Nvidia Driver AMI GPU PyTorch 2.3.1 (Amazon Linux 2) 20240730",
     "Deep Learning OSS Nvidia Driver AMI GPU PyTorch 2.3.1 (Amazon Linux 2)"),
    ("Deep Learning Base OSS Nvidia Driver GPU AMI (Ubuntu 22.04) 20240730",
     "Deep Learning Base OSS Nvidia Driver GPU AMI (Ubuntu 22.04)"),
    ("Deep Learning AMI GPU TensorFlow 2.16 (Ubuntu 20.04) 20240610",
     "Deep Learning AMI GPU TensorFlow 2.16 (Ubuntu 20.04)"),
    # Packer and home-grown builds
    ("web-2024-05-01T10-00-00Z", "web"),
    ("web-2024-05-01", "web"),
    ("web-1.2.3", "web"),
    ("web-v12", "web"),
    ("web-2.0-rc1", "web"),
    ("web-1.2.3-x86_64", "web-x86_64"),
    ("base-arm64-1.0.0", "base-arm64"),
    ("api-20240501", "api"),
    ("api-20240501-1", "api"),
    ("myapp-1.4.2-20240501", "myapp"),
    ("web-20240501-a3e8bda", "web"),
    ("app_build-42", "app"),
    ("packer-1714557600", "packer"),
    ("batch-6", "batch"),
    # no version at all, or nothing but one: the name is its own family
    ("seed-base", "seed-base"),
    ("20240501", "20240501"),
    ("x86_64", "x86_64"),
]


@pytest.mark.parametrize("name, family", FAMILIES, ids=[name for name, _ in FAMILIES])
def test_the_family_a_person_would_give(name, family):
    assert family_of(name, {}, "Family") == family


def test_the_table_covers_every_kind_of_public_image():
    assert len(FAMILIES) >= 30
    names = " ".join(name for name, _ in FAMILIES)
    for kind in ("al2023", "amzn2", "ubuntu", "debian", "RHEL", "suse", "Windows_Server", "bottlerocket",
                 "ecs", "eks", "Deep Learning", "T10-00-00Z"):
        assert kind in names, kind


def test_the_family_tag_wins_and_odd_names_do_not_raise():
    assert family_of("web-1.2.3", {"Family": "frontend"}, "Family") == "frontend"
    assert family_of("web-1.2.3", {"family": "frontend"}, "Family") == "web"  # another tag
    assert family_of(None, {}, "Family") == "" and family_of("", {}, "Family") == ""
    assert family_of_new is family_of  # one implementation, importable from both places


def test_one_family_for_all_versions_so_keep_latest_retires_the_older():
    now = datetime(2026, 6, 1, tzinfo=UTC)
    names = ["amzn-ami-hvm-2016.09.0.20161028-x86_64-gp2", "amzn-ami-hvm-2018.03.0.20231218.0-x86_64-gp2"]
    images = [Image(id=f"ami-{n:017x}", name=name, region="us-east-1", state="available", owner_id="1",
                    created=now - timedelta(days=400 - n * 100), public=False, family=family_of(name, {}, "Family"))
              for n, name in enumerate(names)]
    findings = judge(Inventory("us-east-1", images, [], References("us-east-1")), Rules(90, 1, 0.05), now)
    assert [item.image.id for item in findings.stale] == [images[0].id]


# --- [families].patterns --------------------------------------------------------------------------------

def test_patterns_are_tried_in_order_before_the_built_in_rule_and_travel_with_the_family_tag():
    policy = parse_policy({"families": {"patterns": [r"^svc-(?P<family>[a-z]+)-", r"^(?P<family>.+)-v\d+$"]}})
    tag = policy.digest.family_tag
    assert tag == "Family" and family_of("svc-payments-eu-2024w21", {}, tag) == "payments"
    assert family_of("svc-payments-v3", {}, tag) == "payments"  # the first pattern wins
    assert family_of("shop-frontend-v7", {}, tag) == "shop-frontend"
    assert family_of("web-1.2.3", {}, tag) == "web"  # no pattern matches: the built-in rule
    assert family_of("svc-payments-eu-2024w21", {"Family": "pay"}, tag) == "pay"  # the tag still wins
    image = Image.from_aws({"ImageId": "ami-0123456789abcdef0", "Name": "svc-search-build"}, "us-east-1", tag)
    assert image.family == "search"


@pytest.mark.parametrize("pattern, problem", [
    ("(unclosed", "[families].patterns: expected a regular expression, got '(unclosed' (missing )"),
    (r"^(?P<name>.+)-v\d+$", "[families].patterns: expected a regular expression with a named group "
                             "(?P<family>…), got '^(?P<name>.+)-v\\\\d+$'"),
])
def test_a_bad_pattern_is_a_configuration_error_naming_it(pattern, problem):
    with pytest.raises(ConfigError) as raised:
        parse_policy({"families": {"patterns": ["^ok-(?P<family>.+)$", pattern]}})
    assert any(line.startswith(problem) for line in raised.value.problems), raised.value.problems


def test_patterns_apply_to_what_people_see(make_harness, aws):
    running = make_harness({"aws": {"regions": ["us-east-1"]},
                            "families": {"patterns": [r"^svc-(?P<family>[a-z]+)-"]}})
    seed.image(aws, "svc-payments-eu-2024w21")
    running.command("list svc-payments")
    assert "family *payments*" in running.last_reply().text
