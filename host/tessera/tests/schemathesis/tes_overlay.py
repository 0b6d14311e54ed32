"""The TES 1.1.0 OpenAPI document as schemathesis checks it here: two changes, each
because the published document cannot be used as it is.

1. `tesTask.required: [executors]` is lifted. The same document says that view=MINIMAL
   returns "ONLY the fields: tesTask.Id, tesTask.State", which contradicts requiring
   `executors` in every tesTask; a conforming server cannot satisfy both.
2. The GA4GH service-info `Service` and `ServiceType` schemas, referenced by URL, are
   copied in (from ga4gh-discovery/ga4gh-service-info v1.0.0): the tests reach no
   network but loopback, and without them service-info would go unchecked.

usage: python tes_overlay.py SPEC OUT
"""

import sys

import yaml

SERVICE_INFO = "https://raw.githubusercontent.com/ga4gh-discovery/ga4gh-service-info/v1.0.0/service-info.yaml#/components/schemas/"

SERVICE_TYPE = {
    "type": "object",
    "required": ["group", "artifact", "version"],
    "properties": {
        "group": {"type": "string"},
        "artifact": {"type": "string"},
        "version": {"type": "string"},
    },
}

SERVICE = {
    "type": "object",
    "required": ["id", "name", "type", "organization", "version"],
    "properties": {
        "id": {"type": "string"},
        "name": {"type": "string"},
        "type": {"$ref": "#/components/schemas/Ga4ghServiceType"},
        "description": {"type": "string"},
        "organization": {
            "type": "object",
            "required": ["name", "url"],
            "properties": {
                "name": {"type": "string"},
                "url": {"type": "string", "format": "uri"},
            },
        },
        "contactUrl": {"type": "string", "format": "uri"},
        "documentationUrl": {"type": "string", "format": "uri"},
        "createdAt": {"type": "string", "format": "date-time"},
        "updatedAt": {"type": "string", "format": "date-time"},
        "environment": {"type": "string"},
        "version": {"type": "string"},
    },
}


def localise(node):
    """Point the service-info references at the copies."""
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith(SERVICE_INFO):
            node["$ref"] = "#/components/schemas/Ga4gh" + ref[len(SERVICE_INFO):]
        for value in node.values():
            localise(value)
    elif isinstance(node, list):
        for value in node:
            localise(value)


def main():
    spec_path, out_path = sys.argv[1], sys.argv[2]
    with open(spec_path) as f:
        spec = yaml.safe_load(f)
    schemas = spec["components"]["schemas"]
    schemas["tesTask"].pop("required")
    schemas["Ga4ghService"] = SERVICE
    schemas["Ga4ghServiceType"] = SERVICE_TYPE
    localise(spec)
    with open(out_path, "w") as f:
        yaml.safe_dump(spec, f, sort_keys=False)


main()
