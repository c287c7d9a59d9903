import logging

from celery import shared_task

log = logging.getLogger(__name__)


@shared_task
def heartbeat():
    log.info("heartbeat")
    return "ok"
