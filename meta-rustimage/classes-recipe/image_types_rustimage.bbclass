# image_types_rustimage.bbclass: the "docker-tar" image type, a container
# image built by rustimage with one layer per package.
#
# ${IMGDEPLOYDIR}/${IMAGE_NAME}.docker-tar is one tar file that `docker load`,
# `podman load`, `skopeo copy docker-archive:...` and containerd all accept
# (a Docker archive and an OCI image layout in one); do_image_complete
# deploys it with the link ${IMAGE_LINK_NAME}.docker-tar beside the image's
# other files. Layers follow the image manifest: each package's files form
# one layer (grouped by recipe, then merged, when there are more packages
# than RUSTIMAGE_MAX_LAYERS allows), and what no package ships as is (passwd
# edits, ld.so.cache, update-alternatives links, ...) goes into a final
# layer. Images that share package versions share layers.
#
# Use: add meta-rustimage to BBLAYERS and write, in local.conf or the image
# recipe,
#
#     IMAGE_FSTYPES:append = " docker-tar"
#
# The layer's conf/layer.conf brings this class into exactly the images
# whose IMAGE_FSTYPES name docker-tar (as image.bbclass brings image-container
# into images with "container"); an image recipe may also inherit it. Images
# without docker-tar never see it: no task, variable or signature changes.
#
# Reading the rootfs: the command reads ${IMAGE_ROOTFS} itself, not one of
# OE's rootfs tarballs. do_image_docker_tar is a fakeroot task, so rustimage
# (linked against the C library, which pseudo intercepts) sees the owners,
# modes, device nodes and extended attributes pseudo recorded, as OE's own
# mkfs-style image types do. OE's tar image type is not used because it is
# written without --xattrs (file capabilities would be lost) and because
# depending on it (IMAGE_TYPEDEP) would deploy an extra uncompressed rootfs
# tarball with every image.
#
# Package ownership comes from the image manifest, the feed of the package
# backend the rootfs was built with (DEPLOY_DIR_IPK, DEPLOY_DIR_DEB or
# DEPLOY_DIR_RPM after IMAGE_PKGTYPE) and PKGDATA_DIR. All of these are
# produced by the tasks do_image_docker_tar runs after, so their content
# needs no file checksums: a change there reruns do_rootfs and with it every
# image task. A layer rules file is the one input from outside the build; it
# is listed in the task's file-checksums.
#
# Reruns: do_rootfs writes the image manifest as ${IMAGE_MANIFEST}, under
# IMAGE_NAME, whose DATETIME is new in every bitbake invocation, and
# do_image_complete's sstate deploys it to DEPLOY_DIR_IMAGE at the end of
# the build. When a later invocation reruns do_image_docker_tar alone (a
# RUSTIMAGE_* variable or rustimage-native changed), do_rootfs does not run
# again and ${IMAGE_MANIFEST} names a file that never existed. So a postfunc
# of do_rootfs keeps a copy at RUSTIMAGE_ROOTFS_MANIFEST, in WORKDIR beside
# ${IMAGE_ROOTFS}, and the task reads that: it lives exactly as long as the
# rootfs it describes. (rm_work empties both; the task then says so.)
#
# Variables (local.conf, distro or image recipe). Lists are space-separated
# words; a word may be quoted ('KEY=a value with spaces').
#
#   RUSTIMAGE_TAG          Image names, NAME[:TAG], written into the archive
#                          (`docker load` tags the image with them).
#                          Default: ${IMAGE_BASENAME}:latest
#   RUSTIMAGE_LAYERS       "per-package" (default) or "squash" (one layer).
#   RUSTIMAGE_MAX_LAYERS   Most layers, the final one included (default 100;
#                          Docker refuses more than 125, and images built on
#                          top of this one need some too).
#   RUSTIMAGE_LAYER_RULES  INI file of named layers and the package globs
#                          they take (see rustimage's README). An absolute
#                          path, or a path looked up in BBPATH (a layer can
#                          ship conf/rustimage-layers.ini). Default: none.
#   RUSTIMAGE_ENTRYPOINT   Entrypoint: a JSON array ('["/bin/sh","-c"]') or
#                          words. Default: none.
#   RUSTIMAGE_CMD          Default command, same syntax.
#                          Default: ${base_bindir}/sh
#   RUSTIMAGE_ENV          KEY=VALUE environment entries. PATH gets the usual
#                          default unless given.
#   RUSTIMAGE_WORKDIR      Working directory (absolute path).
#   RUSTIMAGE_USER         User the container runs as: NAME, UID or UID:GID.
#   RUSTIMAGE_PORTS        Exposed ports, PORT[/tcp|udp|sctp].
#   RUSTIMAGE_LABELS       KEY=VALUE config labels.
#   RUSTIMAGE_ANNOTATIONS  KEY=VALUE manifest annotations. They are added to
#                          (and replace those of the same KEY among) the ones
#                          taken from OE: org.opencontainers.image.title
#                          (IMAGE_BASENAME), .version (DISTRO_VERSION),
#                          .description (SUMMARY), .url (HOMEPAGE, if set)
#                          and .created. "KEY=" (empty value) removes one.
#                          The metadata revision is not among them: it
#                          would make every new OE-core or layer commit
#                          rebuild every container image, identical but for
#                          that annotation. To have it anyway, write
#                          RUSTIMAGE_ANNOTATIONS += "org.opencontainers.image.revision=${METADATA_REVISION}".
#   RUSTIMAGE_COMPRESSION  Layer compression: gzip (default; every client
#                          reads it), zstd (Docker 23+, podman; not skopeo
#                          1.9 or Docker 20.10) or none.
#   RUSTIMAGE_ARCH         Architecture as Go and OCI name it. Default:
#                          TARGET_ARCH mapped by OE's own oe.go.map_arch
#                          (x86_64 -> amd64, aarch64 -> arm64, i686 -> 386...).
#   RUSTIMAGE_VARIANT      Architecture variant. Default: v8/v7/v6/v5 for
#                          32-bit ARM after TUNE_FEATURES, else none.
#   RUSTIMAGE_JOBS         Threads compressing layers (default
#                          BB_NUMBER_THREADS). Not part of the task signature:
#                          the output is the same for any value.
#   RUSTIMAGE_SBOM         "generate" (default): the docker-tar carries an
#                          SPDX 2.3 SBOM of its packages (version, recipe,
#                          license, the layer holding each) as an OCI
#                          referrer of the image; "none": no SBOM.
#   RUSTIMAGE_EXTRA_ARGS   More `rustimage build` flags, as shell words
#                          (e.g. "--stop-signal SIGTERM --volume /data").
#
# The image's creation time, and the upper bound of the mtimes in its
# layers, is REPRODUCIBLE_TIMESTAMP_ROOTFS, the mtime OE gives every rootfs
# file (else SOURCE_DATE_EPOCH): the same rootfs gives the same bytes.
#
# Pushing to a registry is an opt-in task, never run by default:
#
#     bitbake core-image-minimal -c push_container
#
#   RUSTIMAGE_PUSH_REF        Where to push: one or more references
#                             (registry.example.com/team/app:1.0). Required.
#   RUSTIMAGE_PUSH_ARGS       More `rustimage push` flags, as shell words
#                             (--insecure, --ca-cert FILE, -q).
#   RUSTIMAGE_PUSH_DIGESTFILE Where the pushed manifest digest is written.
#
# The push carries the docker-tar's SBOM along, and, when OE's create-spdx
# made one (${IMAGE_LINK_NAME}.spdx.json, OE-core's default distro setup
# enables it), attaches OE's own SPDX 3 SBOM of the image to the pushed
# manifest too: registries with the referrers API list both, others get
# the referrers tag (sha256-<digest>) scanners and oras look for.
#
# Credentials are never taken from BitBake variables, nor is rustimage's
# RUSTIMAGE_CREDS exported: they would end up in `bitbake -e` output and in
# the task's run script. rustimage push reads $DOCKER_CONFIG/config.json,
# ~/.docker/config.json or $REGISTRY_AUTH_FILE, as docker, podman and skopeo
# do. BitBake keeps HOME; to use DOCKER_CONFIG or REGISTRY_AUTH_FILE, add
# them to BB_ENV_PASSTHROUGH_ADDITIONS (or set them in local.conf): the task
# exports them when they are set. Logins kept by a credential helper
# ("credsStore"/"credHelpers": docker-credential-pass, -secretservice,
# -ecr-login, ...) work too: BitBake's task PATH holds only HOSTTOOLS, so
# the task links the docker-credential-* programs found on the PATH bitbake
# was started with into a directory of their own and puts that on PATH.
# With BB_NO_NETWORK = "1" the task stops before contacting anything.
# rustimage also reads certificates from ~/.config/containers/certs.d,
# /etc/containers/certs.d and /etc/docker/certs.d, registries.conf
# (CONTAINERS_REGISTRIES_CONF), podman's login in
# $XDG_RUNTIME_DIR/containers/auth.json and the proxy variables; the task
# exports each that BitBake passes through (the proxies are in its default
# passthrough; add XDG_RUNTIME_DIR or CONTAINERS_REGISTRIES_CONF to
# BB_ENV_PASSTHROUGH_ADDITIONS to use them).

IMAGE_TYPES:append = " docker-tar"

RUSTIMAGE_TAG ?= "${IMAGE_BASENAME}:latest"
RUSTIMAGE_LAYERS ?= "per-package"
RUSTIMAGE_MAX_LAYERS ?= "100"
RUSTIMAGE_LAYER_RULES ?= ""
RUSTIMAGE_ENTRYPOINT ?= ""
RUSTIMAGE_CMD ?= "${base_bindir}/sh"
RUSTIMAGE_ENV ?= ""
RUSTIMAGE_WORKDIR ?= ""
RUSTIMAGE_USER ?= ""
RUSTIMAGE_PORTS ?= ""
RUSTIMAGE_LABELS ?= ""
RUSTIMAGE_ANNOTATIONS ?= ""
RUSTIMAGE_COMPRESSION ?= "gzip"
RUSTIMAGE_ARCH ?= "${@rustimage_oci_arch(d)}"
RUSTIMAGE_VARIANT ?= "${@rustimage_oci_variant(d)}"
RUSTIMAGE_JOBS ?= "${BB_NUMBER_THREADS}"
RUSTIMAGE_SBOM ?= "generate"
RUSTIMAGE_EXTRA_ARGS ?= ""

RUSTIMAGE_PUSH_REF ?= ""
RUSTIMAGE_PUSH_ARGS ?= ""
RUSTIMAGE_PUSH_DIGESTFILE ?= "${WORKDIR}/push_container/${IMAGE_BASENAME}.digest"

# What do_image_docker_tar needs from do_rootfs, kept where a later bitbake
# invocation finds it (see "Reruns" above).
RUSTIMAGE_ROOTFS_MANIFEST = "${WORKDIR}/rustimage/image.manifest"

# For the SPDX 3.0 SBOM of the image (create-spdx-image-3.0): what the file is.
SPDX_IMAGE_PURPOSE:docker-tar = "container"

# image.bbclass turns this into do_image_docker_tar (a fakeroot task). The
# command is a function so that it expands when the task runs, with the
# paths of this build, and so that its variables are tracked one by one in
# the task signature.
IMAGE_CMD:docker-tar = "rustimage_docker_tar"
do_image_docker_tar[depends] += "rustimage-native:do_populate_sysroot"
do_image_docker_tar[file-checksums] += "${@rustimage_layer_rules_checksum(d)}"

# After do_rootfs has written ${IMAGE_MANIFEST}: keep it for the image task
# of this and of later invocations.
do_rootfs[postfuncs] += "rustimage_keep_rootfs_manifest"
python rustimage_keep_rootfs_manifest () {
    import os
    import shutil
    src = d.getVar('IMAGE_MANIFEST')
    dest = d.getVar('RUSTIMAGE_ROOTFS_MANIFEST')
    bb.utils.mkdirhier(os.path.dirname(dest))
    if not os.path.exists(src):
        bb.fatal("rustimage: do_rootfs wrote no image manifest %s" % src)
    shutil.copyfile(src, dest + '.tmp')
    os.replace(dest + '.tmp', dest)
}

rustimage_docker_tar () {
	if [ ! -f "${RUSTIMAGE_ROOTFS_MANIFEST}" ]; then
		bbfatal "rustimage: ${RUSTIMAGE_ROOTFS_MANIFEST}, the copy of the image manifest do_rootfs keeps, is missing (rm_work, or a work directory cleaned by hand, removes it with the rootfs): run 'bitbake -C rootfs ${PN}'"
	fi
	rustimage build \
		--rootfs "${IMAGE_ROOTFS}" \
		--manifest "${RUSTIMAGE_ROOTFS_MANIFEST}" \
		${@rustimage_feed_args(d)} \
		--pkgdata "${PKGDATA_DIR}" \
		${@rustimage_build_args(d)} \
		--jobs "${RUSTIMAGE_JOBS}" \
		${RUSTIMAGE_EXTRA_ARGS} \
		--output "${IMGDEPLOYDIR}/${IMAGE_NAME}.docker-tar"
}
rustimage_docker_tar[vardepsexclude] += "RUSTIMAGE_JOBS"

def rustimage_words(name, value):
    """Splits a list variable into words; quotes group words."""
    import shlex
    try:
        return shlex.split(value or '')
    except ValueError as e:
        bb.fatal('%s: %s' % (name, e))

def rustimage_pairs(name, value):
    """KEY=VALUE words of a variable as (key, value) pairs."""
    pairs = []
    for word in rustimage_words(name, value):
        key, eq, val = word.partition('=')
        if not key or not eq:
            bb.fatal("%s: '%s' is not KEY=VALUE" % (name, word))
        pairs.append((key, val))
    return pairs

def rustimage_oci_arch(d):
    """TARGET_ARCH as Go (GOARCH) and the OCI image config name it, by OE's
    own oe.go.map_arch; '' when there is no such name (set RUSTIMAGE_ARCH
    then). map_arch returns '' (scarthgap), raises KeyError (whinlatter) or
    SkipRecipe (wrynose, master) for an architecture Go has no name for; an
    image must not be skipped for that when RUSTIMAGE_ARCH is set."""
    import oe.go
    try:
        return oe.go.map_arch(d.getVar('TARGET_ARCH') or '') or ''
    except (KeyError, bb.parse.SkipRecipe):
        return ''

def rustimage_oci_variant(d):
    """The OCI platform variant: the ARM architecture version of 32-bit ARM
    tunes (the armvN features of TUNE_FEATURES), else ''."""
    if rustimage_oci_arch(d) != 'arm':
        return ''
    features = (d.getVar('TUNE_FEATURES') or '').split()
    for version in ('8', '7', '6', '5'):
        if any(f.startswith('armv' + version) for f in features):
            return 'v' + version
    return ''

def rustimage_epoch(d):
    """The image's creation time in seconds since the epoch."""
    return (d.getVar('REPRODUCIBLE_TIMESTAMP_ROOTFS') or d.getVar('SOURCE_DATE_EPOCH') or '').strip()

def rustimage_layer_rules(d):
    """RUSTIMAGE_LAYER_RULES as an absolute path ('' if unset, None if a
    relative path is not found in BBPATH)."""
    import os
    rules = (d.getVar('RUSTIMAGE_LAYER_RULES') or '').strip()
    if not rules or os.path.isabs(rules):
        return rules
    return bb.utils.which(d.getVar('BBPATH'), rules) or None

def rustimage_layer_rules_checksum(d):
    """The task's file-checksums entry for the layer rules file."""
    rules = rustimage_layer_rules(d)
    return '%s:True' % rules if rules else ''

def rustimage_feed_args(d):
    """--feed for the package feed the rootfs was installed from."""
    import shlex
    feeds = {
        'ipk': d.getVar('DEPLOY_DIR_IPK'),
        'deb': d.getVar('DEPLOY_DIR_DEB'),
        'rpm': d.getVar('DEPLOY_DIR_RPM'),
    }
    feed = feeds.get(d.getVar('IMAGE_PKGTYPE'))
    return '--feed %s' % shlex.quote(feed) if feed else ''

def rustimage_annotations(d):
    """Manifest annotations: OE's metadata, then RUSTIMAGE_ANNOTATIONS."""
    import datetime
    notes = {
        'org.opencontainers.image.title': d.getVar('IMAGE_BASENAME'),
        'org.opencontainers.image.version': d.getVar('DISTRO_VERSION'),
        'org.opencontainers.image.description': d.getVar('SUMMARY'),
        'org.opencontainers.image.url': d.getVar('HOMEPAGE'),
    }
    epoch = rustimage_epoch(d)
    if epoch:
        created = datetime.datetime.fromtimestamp(int(epoch), datetime.timezone.utc)
        notes['org.opencontainers.image.created'] = created.strftime('%Y-%m-%dT%H:%M:%SZ')
    notes.update(rustimage_pairs('RUSTIMAGE_ANNOTATIONS', d.getVar('RUSTIMAGE_ANNOTATIONS')))
    return [(k, v) for k, v in sorted(notes.items()) if v]

def rustimage_build_args(d):
    """The `rustimage build` flags for the image's configuration and
    layering, shell-quoted."""
    import shlex
    args = []

    for tag in rustimage_words('RUSTIMAGE_TAG', d.getVar('RUSTIMAGE_TAG')):
        args += ['--tag', tag]

    layers = d.getVar('RUSTIMAGE_LAYERS')
    if layers == 'squash':
        args.append('--squash')
    elif layers == 'per-package':
        args += ['--max-layers', d.getVar('RUSTIMAGE_MAX_LAYERS')]
        rules = rustimage_layer_rules(d)
        if rules is None:
            bb.fatal("RUSTIMAGE_LAYER_RULES: %s is not in BBPATH" % d.getVar('RUSTIMAGE_LAYER_RULES'))
        if rules:
            args += ['--layer-rules', rules]
    else:
        bb.fatal("RUSTIMAGE_LAYERS is '%s': use per-package or squash" % layers)

    for flag, value in (('--entrypoint', d.getVar('RUSTIMAGE_ENTRYPOINT')),
                        ('--cmd', d.getVar('RUSTIMAGE_CMD')),
                        ('--workdir', d.getVar('RUSTIMAGE_WORKDIR')),
                        ('--user', d.getVar('RUSTIMAGE_USER'))):
        if value and value.strip():
            args += [flag, value.strip()]
    for env in rustimage_words('RUSTIMAGE_ENV', d.getVar('RUSTIMAGE_ENV')):
        args += ['--env', env]
    for port in rustimage_words('RUSTIMAGE_PORTS', d.getVar('RUSTIMAGE_PORTS')):
        args += ['--expose', port]
    for key, value in rustimage_pairs('RUSTIMAGE_LABELS', d.getVar('RUSTIMAGE_LABELS')):
        args += ['--label', '%s=%s' % (key, value)]
    for key, value in rustimage_annotations(d):
        args += ['--annotation', '%s=%s' % (key, value)]

    arch = d.getVar('RUSTIMAGE_ARCH')
    if not arch:
        bb.fatal("rustimage: no OCI architecture for TARGET_ARCH '%s': set RUSTIMAGE_ARCH" % d.getVar('TARGET_ARCH'))
    args += ['--os', 'linux', '--arch', arch]
    variant = d.getVar('RUSTIMAGE_VARIANT')
    if variant:
        args += ['--variant', variant]
    epoch = rustimage_epoch(d)
    if epoch:
        args += ['--created', '@' + epoch]
    args += ['--compression', d.getVar('RUSTIMAGE_COMPRESSION')]
    sbom = d.getVar('RUSTIMAGE_SBOM')
    if sbom == 'generate':
        args += ['--sbom', 'generate']
    elif sbom != 'none':
        bb.fatal("RUSTIMAGE_SBOM is '%s': use generate or none" % sbom)
    return ' '.join(shlex.quote(a) for a in args)

# Opt-in: `bitbake <image> -c push_container`. Nothing runs it by default
# (it is not before do_build); it builds the image first if needed.
addtask push_container after do_image_complete
do_push_container[doc] = "Pushes the image's docker-tar to RUSTIMAGE_PUSH_REF with rustimage push"
do_push_container[depends] += "rustimage-native:do_populate_sysroot"
do_push_container[nostamp] = "1"
do_push_container[network] = "1"
do_push_container[exports] = "DOCKER_CONFIG REGISTRY_AUTH_FILE XDG_RUNTIME_DIR CONTAINERS_REGISTRIES_CONF \
    HTTPS_PROXY https_proxy HTTP_PROXY http_proxy NO_PROXY no_proxy"
do_push_container[cleandirs] = "${WORKDIR}/push_container"
do_push_container[prefuncs] += "rustimage_credential_helpers"

RUSTIMAGE_CREDENTIAL_HELPERS_DIR = "${WORKDIR}/push_container-credential-helpers"

# Registry logins kept by a credential helper name a program
# docker-credential-NAME that rustimage push runs from PATH. BitBake gives
# tasks a PATH of HOSTTOOLS only, so link the helpers found on the PATH
# bitbake was started with (BB_ORIGENV) into a directory of their own, and
# nothing else of the host's.
python rustimage_credential_helpers () {
    import glob
    import os
    dest = d.getVar('RUSTIMAGE_CREDENTIAL_HELPERS_DIR')
    origenv = d.getVar('BB_ORIGENV', False)
    path = (origenv.getVar('PATH') if origenv else None) or ''
    for directory in path.split(':'):
        if not directory:
            continue
        for helper in sorted(glob.glob(os.path.join(directory, 'docker-credential-*'))):
            link = os.path.join(dest, os.path.basename(helper))
            if os.path.isfile(helper) and os.access(helper, os.X_OK) and not os.path.lexists(link):
                os.symlink(helper, link)
                bb.debug(1, "rustimage: credential helper %s" % helper)
}
rustimage_credential_helpers[cleandirs] = "${RUSTIMAGE_CREDENTIAL_HELPERS_DIR}"

do_push_container () {
	archive="${DEPLOY_DIR_IMAGE}/${@d.getVar('IMAGE_LINK_NAME') or d.getVar('IMAGE_NAME')}.docker-tar"
	if [ -z "${RUSTIMAGE_PUSH_REF}" ]; then
		bbfatal "rustimage: set RUSTIMAGE_PUSH_REF to the reference to push to (registry.example.com/team/${IMAGE_BASENAME}:latest)"
	fi
	if [ "${@'1' if bb.utils.to_boolean(d.getVar('BB_NO_NETWORK')) else ''}" = "1" ]; then
		bbfatal "rustimage: BB_NO_NETWORK is set, so do_push_container does not contact ${RUSTIMAGE_PUSH_REF}: push from a build with network access (BB_NO_NETWORK unset), or copy $archive with skopeo"
	fi
	if [ ! -e "$archive" ]; then
		bbfatal "rustimage: $archive does not exist: add docker-tar to IMAGE_FSTYPES (IMAGE_FSTYPES:append = \" docker-tar\")"
	fi
	export PATH="${RUSTIMAGE_CREDENTIAL_HELPERS_DIR}:$PATH"
	spdx="${DEPLOY_DIR_IMAGE}/${@d.getVar('IMAGE_LINK_NAME') or d.getVar('IMAGE_NAME')}.spdx.json"
	for ref in ${RUSTIMAGE_PUSH_REF}; do
		bbnote "rustimage: pushing $archive to $ref"
		rustimage push ${RUSTIMAGE_PUSH_ARGS} --digestfile "${RUSTIMAGE_PUSH_DIGESTFILE}" "$archive" "$ref"
		digest="$(cat "${RUSTIMAGE_PUSH_DIGESTFILE}")"
		bbplain "rustimage: pushed $ref@$digest"
		if [ -e "$spdx" ]; then
			# By digest, so the SBOM can't land on a tag moved meanwhile.
			repo="${ref%@*}"
			case "${repo##*/}" in *:*) repo="${repo%:*}";; esac
			rustimage attach ${RUSTIMAGE_PUSH_ARGS} "$repo@$digest" --sbom "$spdx"
			bbplain "rustimage: attached OE's SBOM $(basename "$spdx") to $repo@$digest"
		fi
	done
}

# OE's SPDX of the image must exist before the push attaches it.
python () {
    if bb.data.inherits_class('create-spdx-image-3.0', d):
        d.appendVarFlag('do_push_container', 'depends', ' %s:do_create_image_sbom_spdx' % d.getVar('PN'))
}

# docker-tar.gz and the like: image.bbclass would compress the finished
# archive as a whole. Its layers are compressed already
# (RUSTIMAGE_COMPRESSION), so that only costs time, and the result is no
# longer the OCI layout skopeo and containerd read. Skipping the recipe (as
# image-container.bbclass does for its own misconfiguration) shows the reason
# when the image is asked for, at parse time, without failing the parse of
# every other recipe.
python () {
    for fstype in (d.getVar('IMAGE_FSTYPES') or '').split():
        if fstype.startswith('docker-tar.'):
            raise bb.parse.SkipRecipe(
                "IMAGE_FSTYPES has '%s': docker-tar cannot be compressed as a whole (its layers are "
                "compressed already, and skopeo and containerd read only the plain tar); use "
                "'docker-tar' and set RUSTIMAGE_COMPRESSION (gzip, zstd or none) for the layers" % fstype)
}
