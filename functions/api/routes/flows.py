"""/v1/flows: submit a tree of dependent jobs in one call, and read one back as a tree."""

from __future__ import annotations

from fastapi import BackgroundTasks, Response

from functions.api.deferred import api_router
from functions.api.deps import CurrentUser, ServicesDep, job_id_or_404, owner_scope
from functions.api.routes.jobs import fire_trigger, flow_spec, submit_one
from functions.api.schemas import FlowPublic, JobCreate, JobPublic
from functions.api.services import Services
from shared.limits import MAX_FLOW_NODES
from shared.models import Job

router = api_router(prefix="/v1/flows", tags=["flows"])


@router.post("", status_code=201)
async def submit_flow(
    body: JobCreate, user: CurrentUser, services: ServicesDep, response: Response, background: BackgroundTasks
) -> FlowPublic:
    """Submit a job and its `children` (a tree across any queues), all or none. Children run first, in
    parallel; each parent waits (waiting-children) until its children have ended as their
    `on_failure` policies require."""
    spec = flow_spec(body, user, services)
    await services.limiter.check(user)
    reply = await submit_one(services, spec)
    jobs = [result.job for result in reply.results]
    response.headers["Location"] = f"/v1/flows/{jobs[0].id}"
    if reply.trigger:
        background.add_task(fire_trigger, services.trigger, reply.triggers)
    return _tree(jobs[0], {job.id: job for job in jobs}, services)


@router.get("/{job_id}")
async def get_flow(job_id: str, user: CurrentUser, services: ServicesDep) -> FlowPublic:
    """A job and its flow children, as a tree with every node's state. Reads one level at a time (one
    command per queue per level), at most MAX_FLOW_NODES jobs. Another user's job is 404."""
    root = await services.engine.get(job_id_or_404(job_id), owner=owner_scope(user))
    found = {root.id: root}
    level = [root]
    while level and len(found) < MAX_FLOW_NODES:
        wanted = [c for job in level for c in job.children if c not in found][: MAX_FLOW_NODES - len(found)]
        level = await services.engine.get_many(wanted) if wanted else []
        found.update((job.id, job) for job in level if job.owner == root.owner)
    return _tree(root, found, services)


def _tree(root: Job, jobs: dict[str, Job], services: Services) -> FlowPublic:
    """The tree under `root` of the jobs at hand (children missing from `jobs` are left out)."""

    def node(job: Job) -> FlowPublic:
        children = [node(jobs[c]) for c in job.children if c in jobs]
        return FlowPublic(job=JobPublic.of(job, services.registry), children=children)

    return node(root)
