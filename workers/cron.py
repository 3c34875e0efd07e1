"""rq cron configuration: ``rq cron workers.cron`` reads the registrations below when it starts."""

from rq import cron

from workers.cleanup import schedule_store_cleanup
from workers.maintenance import requeue_stranded_codes, requeue_stranded_events
from workers.pools import schedule_pool_expiry, schedule_pool_top_ups
from workers.reconcile import expire_codes, schedule_catch_up
from workers.referrals import release_rewards, requeue_stranded_links
from workers.retention import delete_old_events
from workers.tallies import fold_tallies

cron.register(requeue_stranded_events, queue_name="maintenance", interval=60, job_timeout=300)
cron.register(requeue_stranded_codes, queue_name="maintenance", interval=60, job_timeout=300)
cron.register(schedule_catch_up, queue_name="maintenance", interval=60, job_timeout=300)
cron.register(expire_codes, queue_name="maintenance", interval=300, job_timeout=600)
cron.register(delete_old_events, queue_name="maintenance", interval=3600, job_timeout=1800)
cron.register(schedule_store_cleanup, queue_name="maintenance", interval=3600, job_timeout=300)
cron.register(requeue_stranded_links, queue_name="maintenance", interval=60, job_timeout=300)
cron.register(release_rewards, queue_name="maintenance", interval=60, job_timeout=300)
cron.register(schedule_pool_top_ups, queue_name="maintenance", interval=60, job_timeout=300)
cron.register(schedule_pool_expiry, queue_name="maintenance", interval=900, job_timeout=300)
cron.register(fold_tallies, queue_name="maintenance", interval=60, job_timeout=600)
