# Shared by the benchmarks (sourced; needs ROOT, say, die and jq; build_rootfs also CACHE, SUITE,
# MIRROR and SUDO).

# Sets IMGSIGN to the binary to measure: $IMGSIGN_BENCH_BIN when given (to compare builds),
# else a release build of this checkout.
bench_imgsign() {
    if [ -n "${IMGSIGN_BENCH_BIN:-}" ]; then
        IMGSIGN=$IMGSIGN_BENCH_BIN
        say "using $IMGSIGN (IMGSIGN_BENCH_BIN), not building"
    else
        say "cargo build --release -p imgsign"
        (cd "$ROOT" && cargo build --release --quiet -p imgsign)
        local target_dir
        target_dir=$(cd "$ROOT" && cargo metadata --format-version 1 --no-deps | jq -r .target_directory)
        IMGSIGN=$target_dir/release/imgsign
    fi
    [ -x "$IMGSIGN" ] || die "no binary at $IMGSIGN"
}

# Prints "<regular files> <their bytes>" for a tar file.
tar_stats() {
    [ -f "$1" ] || die "$1 is not a tar file"
    tar -tvf "$1" | awk '$1 ~ /^-/ { n++; s += $3 } END { printf "%d %d\n", n, s }'
}

# Builds $CACHE/rootfs-<name>.tar with mmdebstrap unless it is there already.
build_rootfs() { # include
    local include=$1 name out
    name=$SUITE-minbase${include:+-${include//,/-}}
    out=$CACHE/rootfs-$name.tar
    if [ ! -f "$out" ] || [ ! -s "$out" ]; then
        say "mmdebstrap --variant=minbase ${include:+--include=$include }$SUITE (a few minutes, once)"
        local partial=$CACHE/partial-rootfs-$name.tar
        $SUDO rm -rf "$partial" "$out"
        # The mirror is given explicitly: without one, mmdebstrap reads mirror lines from stdin.
        $SUDO mmdebstrap --variant=minbase --mode=root --format=tar ${include:+--include="$include"} \
            "$SUITE" "$partial" "$MIRROR" </dev/null >"$CACHE/mmdebstrap.log" 2>&1 \
            || { tail -20 "$CACHE/mmdebstrap.log" >&2; die "mmdebstrap failed (log: $CACHE/mmdebstrap.log)"; }
        $SUDO mv "$partial" "$out"
    fi
    echo "$out"
}

# Packs ROOTFS (a tar) into the OCI layout OCI, tag TAG, with umoci: two gzip layers, everything
# but /usr/share, then /usr/share (what bench/sign.sh measures); skipped when OCI has TAG already.
pack_debian_oci() { # rootfs oci tag
    local rootfs=$1 oci=$2 tag=$3 staging
    if [ -f "$oci/index.json" ] && jq -e --arg t "$tag" \
        '.manifests[] | select(.annotations["org.opencontainers.image.ref.name"] == $t)' "$oci/index.json" >/dev/null; then
        return 0
    fi
    say "packing $rootfs into $oci:$tag with umoci (2 gzip layers, once)"
    staging=$(mktemp -d "$CACHE/staging.XXXXXX")
    $SUDO umoci init --layout "$staging/oci"
    $SUDO umoci new --image "$staging/oci:$tag"
    $SUDO umoci unpack --image "$staging/oci:$tag" "$staging/bundle" >/dev/null
    $SUDO tar -xf "$rootfs" -C "$staging/bundle/rootfs" --numeric-owner --exclude=./usr/share
    $SUDO umoci repack --refresh-bundle --image "$staging/oci:$tag" "$staging/bundle"
    $SUDO tar -xf "$rootfs" -C "$staging/bundle/rootfs" --numeric-owner ./usr/share
    $SUDO umoci repack --image "$staging/oci:$tag" "$staging/bundle"
    $SUDO umoci gc --layout "$staging/oci"
    rm -rf "$oci"
    $SUDO mv "$staging/oci" "$oci"
    $SUDO rm -rf "$staging"
}

# The manifest blob path of TAG in the layout OCI.
manifest_of() { # oci tag
    local d
    d=$(jq -r --arg t "$2" '.manifests[] | select(.annotations["org.opencontainers.image.ref.name"] == $t) | .digest' \
        "$1/index.json")
    [ -n "$d" ] || die "$1 has no tag $2"
    echo "$1/blobs/${d/://}"
}

# Writes a blob into OCI (named by its sha256) from stdin; prints its digest.
put_blob() { # oci
    local tmp d
    tmp=$(mktemp "$1/blobs/sha256/.put.XXXXXX")
    cat >"$tmp"
    d=$(sha256sum "$tmp" | cut -d' ' -f1)
    mv "$tmp" "$1/blobs/sha256/$d"
    echo "sha256:$d"
}

# Tags NEW in the layout OCI: the image FROM with one more gzip layer made of the tar LAYER, every
# digest consistent (blob, diff_id in the config, config and layer descriptors in the manifest,
# the index). Replaces an earlier NEW.
add_layer() { # oci from new layer.tar
    local oci=$1 from=$2 new=$3 layer=$4 manifest diff_id blob size config config_digest manifest_digest
    manifest=$(manifest_of "$oci" "$from")
    diff_id=sha256:$(sha256sum "$layer" | cut -d' ' -f1)
    blob=$(gzip -n -c "$layer" | put_blob "$oci")
    size=$(stat -c %s "$oci/blobs/${blob/://}")
    config=$oci/blobs/$(jq -r '.config.digest' "$manifest" | tr : /)
    config_digest=$(jq -c --arg d "$diff_id" '.rootfs.diff_ids += [$d]
        | .history = ((.history // []) + [{"created_by": "imgsign test: add_layer", "comment": "add_layer"}])' \
        "$config" | tr -d '\n' | put_blob "$oci")
    manifest_digest=$(jq -c --arg b "$blob" --argjson s "$size" --arg c "$config_digest" \
        --argjson cs "$(stat -c %s "$oci/blobs/${config_digest/://}")" \
        '.config.digest = $c | .config.size = $cs
         | .layers += [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": $b, "size": $s}]' \
        "$manifest" | tr -d '\n' | put_blob "$oci")
    jq -c --arg t "$new" --arg d "$manifest_digest" --argjson s "$(stat -c %s "$oci/blobs/${manifest_digest/://}")" \
        '.manifests |= (map(select(.annotations["org.opencontainers.image.ref.name"] != $t))
           + [{"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": $d, "size": $s,
               "annotations": {"org.opencontainers.image.ref.name": $t}}])' \
        "$oci/index.json" >"$oci/index.json.new"
    mv "$oci/index.json.new" "$oci/index.json"
}
