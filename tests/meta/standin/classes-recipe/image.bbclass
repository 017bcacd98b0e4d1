# Stand-in for OE-core's image class in meta-rustimage's tests. It was
# written for these tests and shares no code with OE-core; it keeps the
# contract image type classes rely on:
#
# - Each entry of IMAGE_FSTYPES is a type T, or T.C for type T converted by
#   CONVERSION_CMD:C (C in CONVERSIONTYPES). IMAGE_TYPEDEP:T adds types that
#   T needs first.
# - IMAGE_CMD:T is T's command. It is expanded when the recipe is parsed,
#   with T in OVERRIDES and ${type} set to T, except for DATETIME, DATE,
#   TMPDIR, IMAGE_VERSION_SUFFIX and the names in IMAGE_CMD:T[vardepsexclude],
#   which the task expands when it runs.
# - do_image_T (T with - and . as _) runs that command, then
#   "cd ${IMGDEPLOYDIR}" and the conversions. It is a fakeroot task, after
#   do_image and the tasks of T's IMAGE_TYPEDEP, before do_image_complete;
#   create_symlinks runs after it.
# - The classes in IMGCLASSES are inherited (deferred, so that the recipe
#   and configuration can add to the list): image_types, IMAGE_CLASSES, and
#   what a layer appends to IMGCLASSES.
# - do_rootfs_wicenv has every variable of WICVARS, IMAGE_CLASSES among them,
#   in its signature (as in OE-core, where it is in every image).
#
# do_rootfs installs a prepared rootfs: STANDIN_ROOTFS_TARBALL is extracted
# under pseudo (so only pseudo's database knows the owners, as in a real
# build) and STANDIN_IMAGE_MANIFEST is copied to IMAGE_MANIFEST.
# Its postfuncs run after it, as in OE. do_image_complete moves
# IMGDEPLOYDIR's files to DEPLOY_DIR_IMAGE. OE-core's sstate deploys them
# there (SSTATE_SKIP_CREATION; sstate-inputdirs IMGDEPLOYDIR,
# sstate-outputdirs DEPLOY_DIR_IMAGE) and, as run against OE-core master to
# scarthgap, leaves them in IMGDEPLOYDIR until the next do_rootfs cleans it;
# emptying IMGDEPLOYDIR here is the stricter case, where nothing of an
# earlier invocation is left there.

IMAGE_CLASSES ??= ""
IMAGE_FSTYPES ?= "tar.zst"
IMGCLASSES = "image_types ${IMAGE_CLASSES}"
inherit_defer ${IMGCLASSES}

IMAGE_BASENAME ?= "${PN}"
IMAGE_MACHINE_SUFFIX ??= "-${MACHINE}"
IMAGE_NAME_SUFFIX ??= ".rootfs"
IMAGE_VERSION_SUFFIX ?= "-${DATETIME}"
IMAGE_VERSION_SUFFIX[vardepsexclude] += "DATETIME"
IMAGE_LINK_NAME ?= "${IMAGE_BASENAME}${IMAGE_MACHINE_SUFFIX}${IMAGE_NAME_SUFFIX}"
IMAGE_NAME ?= "${IMAGE_LINK_NAME}${IMAGE_VERSION_SUFFIX}"
IMGDEPLOYDIR = "${WORKDIR}/deploy-${PN}-image-complete"
IMAGE_MANIFEST = "${IMGDEPLOYDIR}/${IMAGE_NAME}.manifest"

STANDIN_ROOTFS_TARBALL ?= ""
STANDIN_IMAGE_MANIFEST ?= ""

fakeroot do_rootfs () {
	tar --numeric-owner -xpf "${STANDIN_ROOTFS_TARBALL}" -C "${IMAGE_ROOTFS}"
	cp "${STANDIN_IMAGE_MANIFEST}" "${IMAGE_MANIFEST}"
}
do_rootfs[cleandirs] = "${IMAGE_ROOTFS} ${IMGDEPLOYDIR}"
addtask rootfs

do_image[noexec] = "1"
addtask image after do_rootfs

WICVARS ?= "IMAGE_BASENAME IMAGE_CLASSES IMAGE_LINK_NAME IMAGE_ROOTFS MACHINE"
python do_rootfs_wicenv () {
    for var in d.getVar('WICVARS').split():
        bb.note('%s="%s"' % (var, d.getVar(var) or ''))
}
do_rootfs_wicenv[vardeps] += "${WICVARS}"
addtask rootfs_wicenv after do_image before do_image_complete

python do_image_complete () {
    import os
    deploy = d.getVar('DEPLOY_DIR_IMAGE')
    bb.utils.mkdirhier(deploy)
    made = d.getVar('IMGDEPLOYDIR')
    for name in sorted(os.listdir(made)):
        os.replace(os.path.join(made, name), os.path.join(deploy, name))
}
addtask image_complete after do_image before do_build

python create_symlinks () {
    import os
    link_name = d.getVar('IMAGE_LINK_NAME')
    if not link_name:
        return
    made = d.getVar('IMGDEPLOYDIR')
    task = 'do_' + d.getVar('BB_CURRENTTASK')
    for t in (d.getVarFlag(task, 'subimages') or '').split():
        target = d.getVar('IMAGE_NAME') + '.' + t
        link = os.path.join(made, link_name + '.' + t)
        if os.path.exists(os.path.join(made, target)):
            if os.path.lexists(link):
                os.remove(link)
            os.symlink(target, link)
}

python () {
    conversions = (d.getVar('CONVERSIONTYPES') or '').split()

    def split_type(t):
        base, _, conv = t.rpartition('.')
        return (base, conv) if base and conv in conversions else (t, None)

    # Base type -> what is asked of it, following IMAGE_TYPEDEP.
    wanted = (d.getVar('IMAGE_FSTYPES') or '').split()
    bases = {}
    queue = list(wanted)
    while queue:
        t = queue.pop(0)
        base, conv = split_type(t)
        entry = bases.setdefault(base, {'convs': [], 'keep': False, 'after': []})
        if conv:
            if conv not in entry['convs']:
                entry['convs'].append(conv)
        else:
            entry['keep'] = True
        for dep in (d.getVar('IMAGE_TYPEDEP:' + base) or '').split():
            dep_base = split_type(dep)[0]
            if dep_base not in entry['after']:
                entry['after'].append(dep_base)
            if dep not in wanted:
                wanted.append(dep)
                queue.append(dep)
        d.appendVarFlag('do_image', 'vardeps', ' IMAGE_TYPEDEP:' + base)

    overrides = d.getVar('OVERRIDES', False)
    for base, entry in bases.items():
        local = bb.data.createCopy(d)
        local.setVar('OVERRIDES', base + ':' + overrides)
        local.setVar('type', base)
        late = ['DATETIME', 'DATE', 'TMPDIR', 'IMAGE_VERSION_SUFFIX']
        late += (d.getVarFlag('IMAGE_CMD:' + base, 'vardepsexclude') or '').split()
        for name in late:
            local.delVar(name)
        cmd = local.getVar('IMAGE_CMD')
        if not cmd:
            bb.fatal("IMAGE_FSTYPES has '%s' but no class defines IMAGE_CMD:%s" % (base, base))
        body = ['\t' + cmd, local.expand('\tcd ${IMGDEPLOYDIR}')]
        vardeps = ['IMAGE_CMD:' + base]
        subimages = [base] if entry['keep'] else []
        for conv in entry['convs']:
            body.append('\t' + local.getVar('CONVERSION_CMD:' + conv))
            vardeps.append('CONVERSION_CMD:' + conv)
            subimages.append(base + '.' + conv)
        if not entry['keep']:
            body.append(local.expand('\trm ${IMAGE_NAME}.${type}'))

        task = 'do_image_' + base.replace('-', '_').replace('.', '_')
        d.setVar(task, '\n'.join(body))
        d.setVarFlag(task, 'func', '1')
        d.setVarFlag(task, 'fakeroot', '1')
        d.setVarFlag(task, 'subimages', ' '.join(subimages))
        d.appendVarFlag(task, 'vardeps', ' ' + ' '.join(vardeps))
        d.appendVarFlag(task, 'vardepsexclude', ' ' + ' '.join(late))
        d.prependVarFlag(task, 'postfuncs', 'create_symlinks ')
        after = ['do_image'] + ['do_image_' + a.replace('-', '_').replace('.', '_') for a in entry['after']]
        bb.build.addtask(task, 'do_image_complete', ' '.join(after), d)
}
