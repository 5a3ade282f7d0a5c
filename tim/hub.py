"""Model references and the Hugging Face Hub: pull a checkpoint, check a token, push a checkpoint.

A model reference is a local checkpoint folder or a Hub repo id `user/name`,
optionally pinned as `user/name@revision`. Hub checkpoints are downloaded once
into the normal Hugging Face cache (so `hf download`, `HF_HUB_OFFLINE=1` and
`hf cache` all work as usual) and then loaded from that folder exactly like a
local one, through plain timm.

Only safetensors weights are ever downloaded or loaded: a pickle (.bin, .pth)
can run arbitrary code when opened, and a model reference may come from anyone.

Pushing uploads a checkpoint folder plus its generated model card (tim/card.py)
in one commit, so a repo never holds weights from one run and a card from another.
"""
from __future__ import annotations

import argparse
import os
import shlex
import shutil
import sys
import tempfile
from pathlib import Path

import torch
from huggingface_hub import HfApi, constants, get_token, snapshot_download
from huggingface_hub.errors import (
    GatedRepoError,
    HfHubHTTPError,
    LocalEntryNotFoundError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)
from huggingface_hub.utils import HFValidationError, validate_repo_id

from tim.atomic import recover_folder, write_text_atomically
from tim.card import CARD_NAME, write_card
from tim.checkpoint import (
    CONFIG_NAME,
    PAINTING_NAME,
    PICKLE_SUFFIXES,
    UNKNOWN_NAME,
    WEIGHTS_NAME,
    CheckpointError,
    check_weights,
    ensemble_members,
    has_model,
    is_ensemble,
    load_checkpoint,
    read_config,
)
from tim.validate import validate_checkpoint

# What a Tim checkpoint repo holds, for both directions: config, weights, unknown-artist statistics, card, eval
# results, plots.
# Pickled weights never match, so they are neither downloaded nor uploaded; predictions.csv stays
# local because it lists the paths of the user's own test images.
# An ensemble's members are checkpoints in its subfolders: their config and weights come along ("*.json" already
# matches member-1/config.json: fnmatch's * crosses "/").
HUB_FILES = [CONFIG_NAME, WEIGHTS_NAME, UNKNOWN_NAME, PAINTING_NAME, CARD_NAME, "*.json", "*.png",
             f"*/{WEIGHTS_NAME}"]


class HubError(CheckpointError):
    """A Hub model Tim cannot reach, load or push; the message names the repo and what to do.

    A CheckpointError, so callers that load models catch one exception type for every unusable reference.
    """


# ---------------------------------------------------------------- references and pulling


def parse_ref(ref: str) -> tuple[str, str | None]:
    """("user/name", "revision" or None) for a Hub reference "user/name[@revision]"."""
    repo_id, _, revision = ref.partition("@")
    return repo_id, revision or None


def is_hub_ref(ref: str) -> bool:
    """True when `ref` can only mean a Hub repo: a valid repo id (`user/name`) that reads as no local path.

    Local: an existing path, anything starting with `.`, `/` or `~`, and a path whose first folder
    exists here (`runs/bset` when there is a `runs/` folder: a typo of a local path, never sent to the Hub).
    """
    if Path(ref).expanduser().exists() or ref.startswith((".", "/", "~")):
        return False
    repo_id, _ = parse_ref(ref)
    if "/" not in repo_id or Path(repo_id.split("/")[0]).is_dir():
        return False
    try:
        validate_repo_id(repo_id)
    except HFValidationError:
        return False
    return True


def resolve(ref: str) -> Path:
    """The local folder holding checkpoint `ref`, downloading a Hub checkpoint into the cache if needed."""
    if is_hub_ref(ref):
        repo_id, revision = parse_ref(ref)
        return download(repo_id, revision)
    folder = Path(ref).expanduser()
    if not folder.is_dir():
        recover_folder(folder, clean=False)  # put back a checkpoint whose replacement was interrupted (tim.atomic)
    if not folder.is_dir():
        first = ref.split("/")[0]
        if "/" in ref and Path(first).is_dir():
            raise CheckpointError(
                f"model {ref!r}: no such checkpoint folder (read as a local path because {first}/ exists here; "
                f"it holds {_listing(Path(first))}). To use the Hub repo {ref}, run from a folder without {first}/."
            )
        raise CheckpointError(
            f"model {ref!r}: no such checkpoint folder, and not a Hub repo id (user/name or user/name@revision)."
        )
    return folder


def _listing(folder: Path, most: int = 8) -> str:
    names = sorted(p.name for p in folder.iterdir())
    if not names:
        return "nothing"
    return ", ".join(names[:most]) + (f" and {len(names) - most} more" if len(names) > most else "")


def load_model(ref: str) -> tuple[torch.nn.Module, dict]:
    """(model in eval mode, config) for a local checkpoint folder or a Hub repo id `user/name[@revision]`.

    The config is validated (an architecture timm knows, one label per classifier output) and
    only safetensors weights are accepted. Raises CheckpointError (HubError for the Hub) with a
    message that says what to do.
    """
    model, config, _ = open_checkpoint(ref)
    return model, config


def open_checkpoint(ref: str) -> tuple[torch.nn.Module, dict, Path]:
    """`load_model`, plus the local folder the checkpoint was read from (a Hub model's snapshot in the cache),
    where its other files (unknown.safetensors) are: the reference is resolved, and downloaded, once.

    Every checkpoint is checked by tim.validate before timm builds it: it may come from anyone."""
    folder = resolve(ref)
    if not is_hub_ref(ref):
        if not has_model(folder):  # before the config, so a pickles-only folder gets the pickle explanation
            check_weights(folder)
        return (*_validated(folder), folder)
    try:
        return (*_validated(folder), folder)
    except CheckpointError as e:  # name the repo, not only the snapshot path inside the cache
        raise HubError(f"Hub model {ref}: {e}") from None


def _validated(folder: Path) -> tuple[torch.nn.Module, dict]:
    validate_checkpoint(folder)
    try:
        return load_checkpoint(folder)
    except CheckpointError:
        raise
    except Exception as e:  # noqa: BLE001 - validated, yet timm refused it: still the checkpoint's fault, one line
        raise CheckpointError(f"{folder}: timm could not load this checkpoint ({type(e).__name__}: "
                              f"{str(e).strip().splitlines()[0][:300] if str(e).strip() else ''}).") from None


def download(repo_id: str, revision: str | None = None) -> Path:
    """Snapshot folder of a Tim checkpoint repo in the Hugging Face cache (downloaded once, then reused).

    Only the files in HUB_FILES are fetched. With HF_HUB_OFFLINE=1 or no network, huggingface_hub
    falls back to the cache; when that is empty too, the HubError says how to get the files.
    """
    where = f"{repo_id}@{revision}" if revision else repo_id
    fetch = f"hf download {repo_id}" + (f" --revision {revision}" if revision else "")
    try:
        folder = Path(snapshot_download(repo_id, revision=revision, allow_patterns=HUB_FILES))
    except GatedRepoError:
        raise HubError(
            f"{where}: the repo is gated. Accept its conditions on https://huggingface.co/{repo_id} "
            "and log in (`hf auth login` or HF_TOKEN)."
        ) from None
    except RepositoryNotFoundError:
        raise HubError(
            f"{where}: no such model repo on the Hub, or it is private and you are not logged in "
            f"(`hf auth login` or HF_TOKEN). If you meant a local folder, there is no folder {repo_id!r} here."
        ) from None
    except RevisionNotFoundError:
        raise HubError(f"{where}: the repo has no revision {revision!r} (branch, tag or commit).") from None
    except LocalEntryNotFoundError:
        why = "HF_HUB_OFFLINE=1 is set" if constants.HF_HUB_OFFLINE else "the Hub cannot be reached"
        raise HubError(
            f"{where}: {why}, and this model is not (completely) in the Hugging Face cache "
            f"({constants.HF_HUB_CACHE}). Go online once so Tim downloads it there, or run `{fetch}` "
            "(it fills the same cache), or pass a local checkpoint folder instead."
        ) from None
    except HfHubHTTPError as e:
        raise HubError(f"{where}: the Hub refused the download ({e}).") from None

    if not has_model(folder):  # no weights (an ensemble's are in its member folders)
        pickles = sorted(p.name for p in folder.iterdir() if p.name.endswith(PICKLE_SUFFIXES))
        interrupted = sorted((folder.parent.parent / "blobs").glob("*.incomplete"))
        if not pickles and (interrupted or constants.HF_HUB_OFFLINE):  # the cached snapshot lacks the weights
            why = "an earlier download was interrupted (a partial file is in" if interrupted else "they are not in"
            raise HubError(
                f"{where}: the cached copy has no {WEIGHTS_NAME}: {why} the Hugging Face cache, "
                f"{constants.HF_HUB_CACHE}). Run the command again online (the download resumes where it "
                f"stopped), or run `{fetch}`."
            )
        found = f" It holds only pickled weights ({', '.join(pickles)})." if pickles else ""
        raise HubError(
            f"{where}: no {WEIGHTS_NAME} in the repo.{found} Tim loads safetensors weights only, because a "
            "pickle (.bin, .pth) can run code when opened; pickled weights are never downloaded or loaded. "
            "Ask the author for model.safetensors, or convert the weights yourself where you trust them."
        )
    return folder


# ---------------------------------------------------------------- tokens


def check_push_access(repo_id: str, token: str | None = None) -> str:
    """Fail before any training when `token` (default: HF_TOKEN or `hf auth login`) cannot write `repo_id`.

    Classic tokens have role "read" or "write". Fine-grained tokens list permissions per user, org
    or repo, and can push only with "repo.write" on the repo itself or on its namespace. Returns the
    user name the token belongs to.
    """
    token = token or get_token()
    if not token:
        raise HubError(
            f"cannot push to {repo_id}: no Hugging Face token. Log in with `hf auth login` "
            "(a token with write access, from https://huggingface.co/settings/tokens) or set HF_TOKEN."
        )
    try:
        info = HfApi(token=token).whoami()
    except HfHubHTTPError as e:
        if e.response is not None and e.response.status_code == 401:
            raise HubError(
                f"cannot push to {repo_id}: the Hugging Face token is invalid or expired. "
                "Create a new write token and `hf auth login` again (or update HF_TOKEN)."
            ) from None
        raise HubError(f"cannot push to {repo_id}: checking the token failed ({e}).") from None
    except Exception as e:  # offline mode, no network, DNS: all mean "cannot check now"
        raise HubError(
            f"cannot push to {repo_id}: the Hub cannot be reached to check the token ({e.__class__.__name__}: {e}). "
            "Pushing needs network access (and HF_HUB_OFFLINE unset)."
        ) from None

    user = info.get("name", "?")
    namespace = repo_id.split("/")[0] if "/" in repo_id else user
    access = (info.get("auth") or {}).get("accessToken") or {}
    role = access.get("role")
    if role == "read":
        raise HubError(
            f"cannot push to {repo_id}: the token of {user} is read-only. Create a token with write access at "
            "https://huggingface.co/settings/tokens, then `hf auth login` (or set HF_TOKEN)."
        )
    if role == "fineGrained":
        if not _fine_grained_can_write(access.get("fineGrained") or {}, repo_id, namespace):
            raise HubError(
                f"cannot push to {repo_id}: the fine-grained token of {user} has no 'repo.write' permission "
                f"for {namespace} or {repo_id}. Edit the token's permissions at "
                "https://huggingface.co/settings/tokens (\"Write access to contents/settings of all repos\" "
                "under your user or the org), or use a write token."
            )
    elif role == "write":
        orgs = [org.get("name") for org in info.get("orgs") or []]
        if namespace != user and namespace not in orgs:
            raise HubError(
                f"cannot push to {repo_id}: {user} is not {namespace!r} and not a member of an org of that name. "
                f"Use --repo-id {user}/NAME or an org you belong to."
            )
    # any other kind of credential (e.g. OAuth): the Hub decides at upload time
    return user


def _fine_grained_can_write(fine_grained: dict, repo_id: str, namespace: str) -> bool:
    """True when a scoped entry grants "repo.write" on the repo itself or on its user/org namespace."""
    for scope in fine_grained.get("scoped") or []:
        entity = scope.get("entity") or {}
        if "repo.write" not in (scope.get("permissions") or []):
            continue
        if entity.get("type") == "model" and entity.get("name") == repo_id:
            return True
        if entity.get("type") in ("user", "org") and entity.get("name") == namespace:
            return True
    return False


# ---------------------------------------------------------------- pushing


def retry_command(
    folder: str | Path, repo_id: str, private: bool = False, revision: str | None = None,
    commit_message: str | None = None,
) -> str:
    """The `tim push ...` command line that repeats this push, quoted for a POSIX shell."""
    parts = ["tim", "push", str(folder), "--repo-id", repo_id]
    if private:
        parts.append("--private")
    if revision:
        parts += ["--revision", revision]
    if commit_message:
        parts += ["--commit-message", commit_message]
    return shlex.join(parts)


def push_checkpoint(
    folder: str | Path,
    repo_id: str,
    private: bool = False,
    revision: str | None = None,
    commit_message: str | None = None,
    token: str | None = None,
) -> str:
    """Upload checkpoint `folder` to `repo_id` in one commit, with a fresh model card; return the commit URL.

    The upload is staged in a temporary folder (links to the checkpoint's files plus the fresh card),
    and the card is copied into the checkpoint only after the push succeeded, so the local checkpoint
    and the repo carry the same card. The repo is created if needed (`private` only applies to a new
    repo), and the branch `revision` too. Files of an earlier push that this checkpoint lacks (say an
    old eval_results.json) are deleted in the same commit, so the repo describes these weights only.
    On any failure the local files are left as they were and the HubError holds the retry command.
    """
    folder = Path(folder)
    config = validate_checkpoint(folder)  # refuse to publish something Tim could not load back
    if not is_ensemble(config):
        check_weights(folder)
    with tempfile.TemporaryDirectory(prefix="tim-push-") as tmp:
        staged = _stage(folder, Path(tmp) / folder.name)
        card = write_card(staged, repo_id)
        url = _upload(staged, folder, repo_id, private, revision, commit_message, token, config)
        write_text_atomically(folder / CARD_NAME, card.read_text(encoding="utf-8"))
    return url


def _stage(folder: Path, staged: Path, members: bool = True) -> Path:
    """A folder of hard links (copies across file systems) to the files of `folder` that a push uploads,
    with an ensemble's member folders (tim.checkpoint.ensemble_members) staged the same way."""
    staged.mkdir(parents=True)
    for path in folder.iterdir():
        if path.is_file() and path.name != CARD_NAME:
            try:
                os.link(path, staged / path.name)
            except OSError:
                shutil.copy2(path, staged / path.name)
    if members:
        for member in ensemble_members(folder, read_config(folder)):
            _stage(member, staged / member.relative_to(folder), members=False)
    return staged


def _upload(staged: Path, folder: Path, repo_id: str, private: bool, revision: str | None,
            commit_message: str | None, token: str | None, config: dict) -> str:
    """One commit of the staged files to `repo_id`; the commit URL, or a HubError naming the retry command."""
    retry = retry_command(folder.resolve(), repo_id, private, revision, commit_message)
    if commit_message is None:
        commit_message = f"Tim checkpoint: {config['architecture']}, {config['num_classes']} artists"

    api = HfApi(token=token)
    try:
        # private=None for a public push lets an org's default visibility apply to a new repo
        api.create_repo(repo_id, private=True if private else None, exist_ok=True)
        if revision:
            api.create_branch(repo_id, branch=revision, exist_ok=True)
        commit = api.upload_folder(
            repo_id=repo_id,
            folder_path=staged,
            revision=revision,
            commit_message=commit_message,
            allow_patterns=HUB_FILES,
            delete_patterns=HUB_FILES,
        )
    except Exception as e:  # whatever failed (network, auth, quota), the user needs the same two facts
        raise HubError(
            f"pushing {folder} to {repo_id} failed: {e.__class__.__name__}: {e}\n"
            f"The local checkpoint is intact. Retry with:\n  {retry}"
        ) from e
    return commit.commit_url


# ---------------------------------------------------------------- CLI


def add_cli(sub) -> None:
    push = sub.add_parser("push", help="upload a checkpoint and its model card to the Hugging Face Hub")
    push.add_argument("checkpoint", help="checkpoint folder (config.json + model.safetensors)")
    push.add_argument("--repo-id", required=True, metavar="USER/NAME", help="Hub model repo (created if missing)")
    push.add_argument("--private", action="store_true", help="create the repo private (an existing repo keeps its visibility)")
    push.add_argument("--revision", metavar="BRANCH", help="push to this branch (created from main if missing)")
    push.add_argument("--commit-message", help="commit message (default: architecture and number of artists)")
    push.set_defaults(func=_push_command)

    card = sub.add_parser("card", help="write or refresh a checkpoint's model card (README.md) without pushing")
    card.add_argument("checkpoint", help="checkpoint folder")
    card.add_argument("--repo-id", metavar="USER/NAME", help="repo named in the card's loading examples")
    card.set_defaults(func=_card_command)


def _push_command(args: argparse.Namespace) -> int:
    try:
        validate_checkpoint(args.checkpoint)  # a wrong folder is reported before the token is checked online
        check_push_access(args.repo_id)
        url = push_checkpoint(
            args.checkpoint, args.repo_id, private=args.private, revision=args.revision,
            commit_message=args.commit_message,
        )
    except CheckpointError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(f"Pushed {args.checkpoint} to {args.repo_id}: {url}")
    return 0


def _card_command(args: argparse.Namespace) -> int:
    try:
        validate_checkpoint(args.checkpoint)  # the card reads the config's fields: check them first
        path = write_card(args.checkpoint, args.repo_id)
    except CheckpointError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(f"Wrote {path}")
    return 0
