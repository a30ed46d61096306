#!/usr/bin/env node
/**
 * Talks to an openEO backend with @openeo/js-client, the Web Editor's own client library:
 * connect, authenticate (HTTP Basic), list collections and processes, describe a collection,
 * build a process graph with the library's builder, validate it and compute it synchronously.
 *
 *   node jsclient_check.mjs URL USER PASSWORD OUTFILE COLLECTION_ID
 *
 * The process graph: load_collection(COLLECTION_ID, two dates, 5 x 5 px, B04 + B08) -> ndvi ->
 * mean over t -> save_result(GTiff); the result is written to OUTFILE. One JSON object on
 * stdout reports what the library saw. Exit status 0 on success, 1 on any error.
 */
import fs from 'node:fs';
import jsclient from '@openeo/js-client';

const { OpenEO } = jsclient;
const [url, user, password, outfile, collectionId] = process.argv.slice(2);

async function main() {
  const con = await OpenEO.connect(url);
  const capabilities = con.capabilities();
  await con.authenticateBasic(user, password);
  const collections = await con.listCollections();
  const described = await con.describeCollection(collectionId);
  const processes = await con.listProcesses();
  const builder = await con.buildProcess();
  const cube = builder.load_collection(
    collectionId,
    { west: 5272000, east: 5272100, south: 2532900, north: 2533000, crs: 3035 },
    ['2015-08-01', '2015-08-12'],
    ['B04', 'B08'],
  );
  const ndvi = builder.ndvi(cube, 'B08', 'B04');
  const mean = builder.reduce_dimension(ndvi, (data, _, child) => child.mean(data), 't');
  const saved = builder.save_result(mean, 'GTiff');
  saved.result = true; // what the library does for the node given to computeResult
  const graph = builder.toJSON();
  const errors = await con.validateProcess(saved);
  const result = await con.computeResult(saved);
  const chunks = [];
  for await (const chunk of result.data) {
    chunks.push(chunk);
  }
  fs.writeFileSync(outfile, Buffer.concat(chunks));
  const info = {
    api_version: capabilities.apiVersion(),
    backend_title: capabilities.title(),
    can_compute: capabilities.hasFeature('computeResult'),
    can_batch: capabilities.hasFeature('createJob'),
    collections: collections.collections.map((c) => c.id),
    bands: described['cube:dimensions'].bands.values,
    processes: processes.processes.length,
    has_deepfeatures: processes.processes.some((p) => p.id === 'deepfeatures_feature_cube'),
    validation_errors: errors,
    result_type: result.type,
    result_bytes: fs.statSync(outfile).size,
    graph: graph.process_graph,
  };
  process.stdout.write(JSON.stringify(info) + '\n');
}

main().catch((error) => {
  process.stderr.write(`${error.code || ''} ${error.message}\n`);
  process.exit(1);
});
