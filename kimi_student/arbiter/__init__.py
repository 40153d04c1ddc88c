"""The CAWS arbiter: working specs, tier policies, waivers and evidence (`documents`), unified diffs (`diff`),
scope patterns (`scope`), the deterministic rule oracle (`oracle`) and the verdict it and the Judge write
(`verdict`)."""
