// The JSON Schema of config files, built from the same declarations the loader uses (the device
// model's options, service-settings.ts), so the published config/ublk-ts.schema.json cannot drift
// from what is accepted: test/unit/config-schema.test.ts compares the two and checks the
// examples against it. After changing an option: `npm run build:ts && npm run config-schema`.
// The schema checks shapes, types and ranges (editors use it); the loader also checks what
// depends on several fields and on the system (a target's files exist, ids are unique...).

import type { DeviceModel } from '../shared/device-model';
import { NAME_FIELD, NAME_RE } from './load-config';
import { SERVICE_FIELDS, SERVICE_KEYS } from './service-settings';

type Schema = Record<string, unknown>;

export function buildSchema(model: DeviceModel<unknown>): Schema {
  const device = model.schema();
  const deviceProps: Schema = {
    [NAME_FIELD]: {
      description:
        'unique name used in logs, STATUS= and metrics, and by SIGHUP to match devices; default: the file name without .json (with -INDEX when the file declares several devices)',
      type: 'string',
      pattern: NAME_RE.source,
    },
    ...(device.properties as Schema),
  };

  const serviceProps: Record<string, Schema> = {};
  for (const k of SERVICE_KEYS) {
    const f = SERVICE_FIELDS[k];
    const s: Schema = { description: `${f.description} (overridden by ${f.cli} and $${f.env})`, type: 'string', default: f.default };
    if (f.enum) s.enum = [...f.enum];
    if (k === 'metricsAddress') s.pattern = '^(off|\\[[0-9A-Fa-f:.]+\\]:\\d{1,5}|[^:\\[\\]]+:\\d{1,5})$';
    serviceProps[k] = s;
  }

  return {
    $schema: 'https://json-schema.org/draft/2020-12/schema',
    title: 'ublk-ts configuration',
    description:
      'Devices for `ublk-ts serve --config FILE|DIR` (every device) and `ublk-ts add --config FILE` (one device), and service settings. Precedence: command line > UBLK_TS_* environment > this file > defaults.',
    type: 'object',
    additionalProperties: false,
    properties: {
      $schema: { type: 'string', description: 'for editors' },
      service: { type: 'object', additionalProperties: false, properties: serviceProps },
      devices: { type: 'array', items: { $ref: '#/$defs/device' } },
    },
    $defs: { device: { ...device, properties: deviceProps } },
  };
}

export function schemaText(model: DeviceModel<unknown>): string {
  return `${JSON.stringify(buildSchema(model), null, 2)}\n`;
}
