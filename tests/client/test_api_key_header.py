"""The key every tool sends comes from one variable, the one ``enroll-folder`` documents."""

from __future__ import annotations

from cli.enroll_folder_command import API_KEY_VARIABLE as ENROLL_FOLDER_VARIABLE
from client.api_key_header import API_KEY_VARIABLE, api_key_headers


def test_the_key_in_the_variable_is_sent_as_a_bearer_token() -> None:
    assert API_KEY_VARIABLE == ENROLL_FOLDER_VARIABLE == "CENTROID_RETRIEVAL_API_KEY"
    assert api_key_headers({API_KEY_VARIABLE: "cr_shop_ab12"}) == {
        "Authorization": "Bearer cr_shop_ab12"
    }
    # A trailing newline from `$(cat keyfile)` or an editor is not part of the key.
    assert api_key_headers({API_KEY_VARIABLE: " cr_shop_ab12\n"}) == {
        "Authorization": "Bearer cr_shop_ab12"
    }
    for unset in ({}, {API_KEY_VARIABLE: ""}, {API_KEY_VARIABLE: "  "}):
        assert api_key_headers(unset) == {}
