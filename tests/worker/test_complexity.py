"""The parse and derive path costs time linear in its input, for every adversarial family.

Each family of ``loadkit.complexity`` (runs of newlines, "On a a a ..." lines, long lines,
deep quoting, HTML nesting, hostile charsets in parts and headers, many encoded words) is
built at a size n and at 8n and run through what the ingest task runs on an email
(``loadkit.complexity.run_path``: ``parsing.parse_inbound``, ``derive.email_columns``,
``derive.attachment_columns``). Linear growth makes the 8n run about 8 times slower,
quadratic growth 64 times: a ratio over 20 fails. Times are CPU seconds of this process,
the best of a few runs, so the other processes of a shared machine do not count; a run
too short to measure is counted as the floor, and a family whose 8n run stays under
the noise threshold passes whatever its ratio. Pure: nothing is started.

The seconds per MB of each family at 1 MiB are printed by the bench's ``complexity`` stage
(``python -m bench.run --only complexity``).
"""

from __future__ import annotations

from typing import Final

import pytest

from loadkit.complexity import FAMILIES, cpu_seconds, inbound_event, plain, run_path

# Slack for noise on a shared two-core machine: linear is 8, quadratic 64.
MAX_RATIO: Final = 20.0
# Below these CPU times a measurement is mostly noise.
FLOOR_SECONDS: Final = 0.005
NOISE_SECONDS: Final = 0.1
DEFAULT_SIZE: Final = 2 * 1024
# Families whose quadratic step has a small constant need a larger n to show it.
SIZES: Final = {
    "punycode_body": 32 * 1024,
    "utf7_body": 32 * 1024,
    "punycode_headers": 32 * 1024,
    "punycode_filename": 32 * 1024,
    "many_encoded_words": 16 * 1024,
    "html_deep_nesting": 16 * 1024,
    "html_unclosed_tags": 8 * 1024,
    "html_blockquotes": 16 * 1024,
    "html_table_nesting": 16 * 1024,
    "html_links_entities": 8 * 1024,
    "dsn_report": 16 * 1024,
    # Header families: at 2 KiB the header is half the email, at 16 KiB nearly all of it.
    "content_type_params": 16 * 1024,
    "long_address_list": 16 * 1024,
    "many_address_headers": 8 * 1024,
    "long_folded_header": 16 * 1024,
    "attachment_name": 16 * 1024,
    "many_part_params": 8 * 1024,
}


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_cost_grows_linearly(family: str) -> None:
    build = FAMILIES[family]
    size = SIZES.get(family, DEFAULT_SIZE)
    small_event = inbound_event(build(size))
    large_event = inbound_event(build(8 * size))
    email = run_path(small_event)  # also warms caches (compiled expressions, codecs)
    assert email.raw_sha256  # the family parses: it is not refused by a limit

    small = cpu_seconds(small_event, repeats=3)
    large = cpu_seconds(large_event, repeats=2)
    ratio = large / max(small, FLOOR_SECONDS)
    print(f"\n{family}: n={size} {small:.4f} s, 8n {large:.4f} s, ratio {ratio:.1f}")
    assert large < NOISE_SECONDS or ratio <= MAX_RATIO, (
        f"{family}: {small:.4f} s at {size} bytes, {large:.4f} s at 8x: ratio {ratio:.1f}"
        f" > {MAX_RATIO} (super-linear)"
    )


def test_a_mandrill_attachment_name_costs_linear_time() -> None:
    # Mandrill's own attachment entries carry the name outside the MIME headers.
    def event(size: int) -> dict[str, object]:
        entry = {"name": ". " * (size // 2) + "x.txt", "type": "text/plain", "content": "hi"}
        built = inbound_event(plain("see attached\r\n"))
        built["msg"]["attachments"] = {"x.txt": entry}
        return built

    small_event, large_event = event(64 * 1024), event(512 * 1024)
    (attachment,) = run_path(small_event).attachments
    assert attachment.filename == "x.txt"
    small = cpu_seconds(small_event, repeats=3)
    large = cpu_seconds(large_event, repeats=2)
    ratio = large / max(small, FLOOR_SECONDS)
    print(f"\nattachment name: {small:.4f} s, 8n {large:.4f} s, ratio {ratio:.1f}")
    assert large < NOISE_SECONDS or ratio <= MAX_RATIO
