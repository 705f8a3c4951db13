"""mmretina.utils.cpu: CPU model, ISA flags and native bf16 from
/proc/cpuinfo text (this machine's and two others'), the one-line summary
and the command line."""
import json

import pytest
import torch

from mmretina.utils.cpu import CPUInfo, describe_cpu, main, parse_cpuinfo

AMX = '''processor\t: 0
vendor_id\t: GenuineIntel
model name\t: Intel(R) Xeon(R) Processor
flags\t\t: fpu sse avx2 avx512f avx512_bf16 amx_bf16 amx_tile
processor\t: 1
model name\t: Intel(R) Xeon(R) Processor
flags\t\t: fpu
'''
EPYC = '''processor\t: 0
vendor_id\t: AuthenticAMD
model name\t: AMD EPYC 7B13
flags\t\t: fpu sse sse2 avx fma avx2 bmi2
'''


def test_parse_first_processor():
    model, flags = parse_cpuinfo(AMX)
    assert model == 'Intel(R) Xeon(R) Processor'
    assert {'amx_bf16', 'avx512_bf16', 'avx2'} <= flags
    assert parse_cpuinfo('') == ('', set())
    assert parse_cpuinfo('garbage without colons\n') == ('', set())


def test_parse_bad_input():
    with pytest.raises(TypeError, match='expected str'):
        parse_cpuinfo(None)


def test_describe_amx_and_avx2_only():
    amx = describe_cpu(AMX)
    assert amx.bf16_native
    assert amx.flags == ['amx_bf16', 'avx512_bf16', 'avx512f', 'avx2']
    epyc = describe_cpu(EPYC)
    assert not epyc.bf16_native
    assert epyc.model == 'AMD EPYC 7B13' and epyc.flags == ['avx2']
    assert 'no native bf16' in epyc.summary()
    assert epyc.summary().startswith('AMD EPYC 7B13 (avx2), ')


def test_describe_no_model_name_falls_back():
    info = describe_cpu('flags : avx2\n')
    assert info.model  # platform.processor() / machine()
    assert info.flags == ['avx2'] and not info.bf16_native


def test_describe_this_machine():
    info = describe_cpu()
    assert isinstance(info, CPUInfo) and info.model
    assert info.threads == torch.get_num_threads()
    assert info.cores >= 1
    assert info.bf16_native == bool(
        torch.ops.mkldnn._is_mkldnn_bf16_supported())
    assert f'{info.threads} threads' in info.summary()


def test_main_json(capsys):
    main(['--json'])
    fields = json.loads(capsys.readouterr().out)
    assert set(fields) == {'model', 'flags', 'bf16_native', 'cores',
                           'threads'}


def test_main_bad_option(capsys):
    with pytest.raises(SystemExit) as e:
        main(['--nope'])
    assert e.value.code == 2
    assert 'unrecognized arguments' in capsys.readouterr().err
