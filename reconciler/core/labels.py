"""The labels reconciler puts on images and containers: its state store on the engine.

Images carry PACKAGE, IMAGE_HASH and MANIFEST. A container inherits its image's labels,
so a container someone starts by hand from one of our images has them too: only
MANAGED, set by reconciler on the containers it creates and never on an image, says
that a container is reconciler's to replace or remove.
"""

PACKAGE = "reconciler.package"
IMAGE_HASH = "reconciler.hash"
MANIFEST = "reconciler.manifest"
MANAGED = "reconciler.managed"
CONTAINER_HASH = "reconciler.container-hash"
CONTAINER_INPUTS = "reconciler.container-inputs"  # JSON: a short digest per setting, to say which changed
ROLE = "reconciler.role"  # "" (serves on the published port), "backend", "proxy", "canary"
PROXY_HASH = "reconciler.proxy-hash"
# where an image or container came from (desired.revision): provenance, never a hash
REVISION = "reconciler.revision"  # the short commit, `-dirty` when the inputs differed from it
BRANCH = "reconciler.branch"
OCI_REVISION = "org.opencontainers.image.revision"  # the whole commit
OCI_SOURCE = "org.opencontainers.image.source"  # the origin remote, without credentials
# on a serving container a rollback made: the container hash of the inputs it was rolled back
# from; while the inputs are those, plans leave the package alone
HOLD = "reconciler.hold"
# on a canary (output.container.canary): what the proxy had counted for the canary server when
# it began, "requests,errors", so that its own counts are known after any restart
CANARY = "reconciler.canary"
SBOM = "reconciler.sbom"  # on an image: blake3:<digest> of the sbom.cdx.json it was built with
