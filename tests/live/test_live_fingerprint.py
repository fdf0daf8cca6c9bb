"""The host fingerprint: JSON round trip, backend detection, and the HostProfile it yields."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from msrvirt.arch.cpuid import Feature
from msrvirt.arch.kvm import Backend, Vendor
from msrvirt.errors import UsageError
from msrvirt.live import fingerprint as fpm
from msrvirt.live.kvm import CpuidEntry, Kvm, MsrEntry

# "AuthenticAMD" as CPUID.0 returns it: EBX "Auth", EDX "enti", ECX "cAMD".
AMD_LEAF0 = CpuidEntry(function=0, eax=0xD, ebx=0x68747541, edx=0x69746E65, ecx=0x444D4163)


def sample(**changes: object) -> fpm.Fingerprint:
    base: dict[str, object] = {
        "cpu_model": "AMD EPYC", "kernel_release": "6.18.44", "kvm_api_version": 12,
        "kvm_modules": ("kvm_pvm",), "backend": Backend.PVM,
        "module_params": (("kvm.ignore_msrs", "N"),),
        "cpuid": (AMD_LEAF0,
                  CpuidEntry(function=0x80000001, edx=1 << 29 | 1 << 20),
                  CpuidEntry(function=7, index=1, flags=1, eax=1 << 17)),
        "msr_index_list": (0x10, 0x174), "feature_msr_index_list": (0x10A,),
        "feature_msrs": (MsrEntry(index=0x10A, data=0x69),),
    }
    base.update(changes)
    return fpm.Fingerprint(**base)  # type: ignore[arg-type]


def test_the_json_form_reads_back_to_the_same_fingerprint() -> None:
    fp = sample()
    text = json.dumps(fp.to_obj())
    assert fpm.Fingerprint.from_obj(json.loads(text)) == fp


def test_the_profile_takes_vendor_features_backend_and_msr_list() -> None:
    profile = fpm.host_profile(sample())
    assert (profile.vendor, profile.backend) == (Vendor.AMD, Backend.PVM)
    assert {Feature.LM, Feature.NX, Feature.FRED, Feature.LKGS} <= profile.features
    assert profile.msr_index_list == frozenset({0x10, 0x174})
    assert profile.ignore_msrs is False


def test_ignore_msrs_comes_from_the_kvm_module_parameter() -> None:
    fp = sample(module_params=(("kvm.ignore_msrs", "Y"),))
    assert fpm.host_profile(fp).ignore_msrs


@pytest.mark.parametrize(("params", "caps", "field", "value"), [
    ((("kvm.enable_pmu", "N"),), (), "enable_pmu", False),
    ((("kvm_intel.pt_mode", "1"),), (), "pt_mode", 1),
    ((("kvm_amd.nested", "0"),), (), "nested", False),
    ((), (("hyperv", 0),), "hyperv", False),
    ((), (("x86_smm", 1),), "smm", True),
    ((), (), "enable_apicv", True),
], ids=["kvm.enable_pmu=N", "kvm_intel.pt_mode=1", "kvm_amd.nested=0",
        "no KVM_CAP_HYPERV means no CONFIG_KVM_HYPERV", "KVM_CAP_X86_SMM", "unread: KVM's default"])
def test_module_parameters_and_build_options_come_from_the_fingerprint(
        params: tuple[tuple[str, str], ...], caps: tuple[tuple[str, int], ...], field: str,
        value: object) -> None:
    fp = sample(module_params=params, capabilities=caps)
    assert getattr(fpm.host_profile(fp).params, field) == value


def test_no_single_vendor_module_means_no_profile() -> None:
    fp = sample(kvm_modules=("kvm_amd", "kvm_pvm"), backend=None)
    with pytest.raises(UsageError, match=r"one loaded vendor module .*not \['kvm_amd'"):
        fpm.host_profile(fp)


def test_an_unknown_cpuid_vendor_means_no_profile() -> None:
    fp = sample(cpuid=(CpuidEntry(function=0, ebx=0x20202020, edx=0x20202020, ecx=0x20202020),))
    with pytest.raises(UsageError, match="CPUID vendor must be one of"):
        fpm.host_profile(fp)


@pytest.mark.parametrize(("mutate", "message"), [
    (lambda o: o.pop("cpuid"), "must have 'cpuid'"),
    (lambda o: o.update(extra=1), "not 'extra'"),
    (lambda o: o.update(backend="tcg"), "vmx, svm, pvm or null"),
    (lambda o: o.update(msr_index_list="0x10"), "must be a list"),
    (lambda o: o.update(msr_index_list=["ten"]), "must be an integer or hex string"),
    (lambda o: o.update(feature_msrs=[]), "must be an object"),
    (lambda o: o["cpuid"][0].pop("eax"), "must have exactly"),
], ids=["every key is required", "no unknown keys", "backend is one of three",
        "lists are lists", "indices are numbers", "feature MSRs are a mapping",
        "cpuid entries have all seven fields"])
def test_a_malformed_fingerprint_is_a_usage_error(
        mutate: Callable[[dict[str, Any]], object], message: str) -> None:
    obj = sample().to_obj()
    mutate(obj)
    with pytest.raises(UsageError, match=message):
        fpm.Fingerprint.from_obj(obj)


def test_the_backend_is_read_from_the_loaded_modules(tmp_path: Path) -> None:
    (tmp_path / "kvm_pvm" / "parameters").mkdir(parents=True)
    (tmp_path / "kvm_pvm" / "parameters" / "no_x2apic").write_text("N\n")
    (tmp_path / "kvm" / "parameters").mkdir(parents=True)
    (tmp_path / "kvm" / "parameters" / "ignore_msrs").write_text("Y\n")
    assert fpm.kvm_modules(str(tmp_path)) == ("kvm_pvm",)
    assert fpm.module_params(("kvm", "kvm_pvm"), str(tmp_path)) == (
        ("kvm.ignore_msrs", "Y"), ("kvm_pvm.no_x2apic", "N"))
    (tmp_path / "kvm_intel").mkdir()
    assert fpm.kvm_modules(str(tmp_path)) == ("kvm_intel", "kvm_pvm")


def test_the_cpu_model_is_the_first_model_name(tmp_path: Path) -> None:
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nmodel name\t: AMD EPYC\n\nmodel name\t: other\n")
    assert fpm.cpu_model(str(info)) == "AMD EPYC"
    assert fpm.cpu_model(str(tmp_path / "missing")) == ""


@pytest.mark.kvm
def test_this_host_fingerprints_and_profiles(kvm: Kvm) -> None:
    fp = fpm.take(kvm)
    assert fp.kvm_api_version == 12
    assert fp.kernel_release and fp.cpuid and fp.msr_index_list
    assert fpm.Fingerprint.from_obj(json.loads(json.dumps(fp.to_obj()))) == fp
    assert [e.index for e in fp.feature_msrs] == list(fp.feature_msr_index_list)
    if fp.backend is not None:
        profile = fpm.host_profile(fp)
        assert profile.backend is fp.backend
        assert profile.msr_index_list == frozenset(fp.msr_index_list)
        assert Feature.LM in profile.features


def test_the_profile_takes_maxphyaddr_the_pmu_and_feature_msr_values() -> None:
    # CPUID 0x80000008 EAX[7:0]; an AMD PMU without PerfMonV2 or PERFCTR_CORE has 4 counters
    # (svm/pmu.c amd_pmu_refresh); feature MSR values as KVM reported them.
    fp = sample(cpuid=(AMD_LEAF0, CpuidEntry(function=0x80000008, eax=0x3030)),
                module_params=(("kvm.enable_pmu", "Y"),))
    profile = fpm.host_profile(fp)
    assert profile.phys_addr_bits == 48
    assert (profile.pmu.version, profile.pmu.gp, profile.pmu.fixed) == (1, 4, 0)
    assert profile.feature_msr(0x10A) == 0x69
    assert fpm.host_profile(sample(module_params=(("kvm.enable_pmu", "N"),))).pmu.version == 0
