"""ECS instance types the sandbox can provision: shape, GPUs and price.

Shapes follow Alibaba Cloud's ECS instance-family pages (gn6i = T4, gn6v = V100, gn7i = A10;
g7 = general purpose 1:4). Prices are illustrative pay-as-you-go list prices (USD/hour, order of
magnitude of cn-beijing) so that "cheapest first" ordering and spot discounts behave like the real
ones; they are not a quote.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class InstanceType:
    name: str
    family: str
    vcpu: int
    memory_gib: float
    gpus: int = 0
    gpu_model: str = ""
    gpu_memory_mib: int = 0
    price_payg: float = 0.0  # USD per hour, pay-as-you-go
    spot_discount: float = 0.7  # spot price = price_payg * (1 - spot_discount)

    @property
    def price_spot(self) -> float:
        return round(self.price_payg * (1.0 - self.spot_discount), 4)

    @property
    def price_per_vcpu(self) -> float:
        return self.price_payg / self.vcpu

    def allocatable(self) -> dict[str, str]:
        """Kubernetes allocatable resources a node of this type reports (kubelet reserves a little)."""
        res = {
            "cpu": f"{self.vcpu * 1000 - 100}m",
            "memory": f"{int(self.memory_gib * 1024) - 512}Mi",
            "pods": "64",
            "ephemeral-storage": "110Gi",
        }
        if self.gpus:
            res["nvidia.com/gpu"] = str(self.gpus)
        return res

    def capacity(self) -> dict[str, str]:
        res = {
            "cpu": str(self.vcpu),
            "memory": f"{int(self.memory_gib * 1024)}Mi",
            "pods": "64",
            "ephemeral-storage": "120Gi",
        }
        if self.gpus:
            res["nvidia.com/gpu"] = str(self.gpus)
        return res


CATALOGUE: dict[str, InstanceType] = {
    t.name: t
    for t in (
        # GPU types from the seed procedure.
        InstanceType("ecs.gn6i-c4g1.xlarge", "ecs.gn6i", 4, 15, 1, "Tesla-T4", 15109, 1.05, 0.75),
        InstanceType("ecs.gn6i-c8g1.2xlarge", "ecs.gn6i", 8, 31, 1, "Tesla-T4", 15109, 1.28, 0.75),
        InstanceType("ecs.gn6v-c8g1.2xlarge", "ecs.gn6v", 8, 32, 1, "Tesla-V100-SXM2-16GB", 16160, 2.31, 0.7),
        InstanceType("ecs.gn7i-c8g1.2xlarge", "ecs.gn7i", 8, 30, 1, "NVIDIA-A10", 22731, 1.72, 0.7),
        # CPU types.
        InstanceType("ecs.g7.large", "ecs.g7", 2, 8, price_payg=0.10, spot_discount=0.8),
        InstanceType("ecs.g7.xlarge", "ecs.g7", 4, 16, price_payg=0.20, spot_discount=0.8),
        InstanceType("ecs.g7.2xlarge", "ecs.g7", 8, 32, price_payg=0.40, spot_discount=0.8),
        InstanceType("ecs.c7.xlarge", "ecs.c7", 4, 8, price_payg=0.16, spot_discount=0.8),
        InstanceType("ecs.r7.xlarge", "ecs.r7", 4, 32, price_payg=0.26, spot_discount=0.8),
    )
}


def lookup(name: str) -> InstanceType | None:
    return CATALOGUE.get(name)
